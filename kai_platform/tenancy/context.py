"""What a request is allowed to act as: set by the authentication classes as ``request.auth``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django.http import HttpRequest
    from rest_framework.request import Request


@dataclass(frozen=True)
class AuthContext:
    kind: str  # "jwt" | "api_key"
    organization: Any  # accounts.Organization or None (a user with no membership)
    role: str | None
    session_id: str
    expires_at: datetime | None
    membership: Any = None
    api_key: Any = None
    claims: dict[str, Any] = field(default_factory=dict)
    #: JWTs: what authentication learnt about the per-process credential cache (authcache.Handle)
    cache: Any = field(default=None, repr=False, compare=False)


def get_auth_context(request: HttpRequest | Request) -> AuthContext | None:
    auth = getattr(request, "auth", None)
    return auth if isinstance(auth, AuthContext) else None


def get_organization(request: HttpRequest | Request) -> Any:
    ctx = get_auth_context(request)
    return ctx.organization if ctx else None


def get_role(request: HttpRequest | Request) -> str | None:
    ctx = get_auth_context(request)
    return ctx.role if ctx else None
