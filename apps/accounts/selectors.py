"""Reads of accounts data."""
from __future__ import annotations

import uuid

from apps.accounts.models import ApiKey, Membership, User


def user_and_membership(*, user_id, organization_ref: str | None):
    """The active user and the membership the request acts through, in one query.

    ``organization_ref`` is an organization id or slug (``X-Organization``); without it, the
    user's first membership. Returns ``(None, None)`` for an unknown/inactive user and
    ``(user, None)`` when the user has no (matching) membership.
    """
    if not user_id:
        return None, None
    try:
        user_uuid = uuid.UUID(str(user_id))
    except ValueError:
        return None, None
    memberships = Membership.objects.select_related("user", "organization").filter(
        user_id=user_uuid, user__is_active=True, organization__is_active=True
    )
    if organization_ref:
        try:
            memberships = memberships.filter(organization_id=uuid.UUID(organization_ref))
        except ValueError:
            memberships = memberships.filter(organization__slug=organization_ref)
    membership = memberships.order_by("created_at").first()
    if membership is not None:
        return membership.user, membership
    user = User.objects.filter(pk=user_uuid, is_active=True).first()
    return user, None


def memberships_of(*, user) -> list[Membership]:
    return list(Membership.objects.select_related("organization").filter(user=user).order_by("created_at"))


def api_key_by_prefix(*, prefix: str) -> ApiKey | None:
    return ApiKey.objects.select_related("organization", "created_by").filter(prefix=prefix).first()
