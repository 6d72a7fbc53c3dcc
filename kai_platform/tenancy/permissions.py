"""Role checks. A view names the roles allowed per action in ``action_roles``
(``{"create": HUMAN_ROLES, "restart": HUMAN_ROLES}``); anything unnamed is open to every
member of the request's organization. ``"*"`` sets the view-wide default."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rest_framework import exceptions, permissions

from kai_platform.tenancy.context import get_auth_context
from kai_platform.tenancy.roles import ALL_ROLES

if TYPE_CHECKING:
    from rest_framework.request import Request
    from rest_framework.views import APIView


def required_roles(view: APIView, request: Request) -> frozenset[str]:
    rules = getattr(view, "action_roles", None) or {}
    assert request.method is not None  # a request that reached a view has one
    action = getattr(view, "action", None) or request.method.lower()
    return frozenset(rules.get(action, rules.get("*", ALL_ROLES)))


class IsAuthenticated(permissions.BasePermission):
    """Any valid credential, with or without an organization (``auth/me``, ``auth/session``)."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        return get_auth_context(request) is not None and bool(request.user and request.user.is_authenticated)


class IsOrganizationMember(permissions.BasePermission):
    """A credential bound to an organization, with a role the view allows for this action."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        ctx = get_auth_context(request)
        if ctx is None or not request.user or not request.user.is_authenticated:
            return False
        if ctx.organization is None:
            raise exceptions.PermissionDenied("You are not a member of any organization.")
        allowed = required_roles(view, request)
        if ctx.role not in allowed:
            names = ", ".join(sorted(str(r) for r in allowed))
            raise exceptions.PermissionDenied(f"Role '{ctx.role}' may not do this; it needs one of: {names}.")
        return True
