"""Credentials → (user, AuthContext). ``Authorization: Bearer`` carries a JWT access token or a
platform API key (``kai_…``); the organization comes from the credential, never from the body."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.core.cache import cache
from django.core.signals import setting_changed
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import AccessToken

from kai_platform import ports
from kai_platform.api import backoff, ratelimit, sharedcache
from kai_platform.api.errors import codes
from kai_platform.clientaddr import client_address
from kai_platform.logging import request_state
from kai_platform.tenancy import authcache
from kai_platform.tenancy.context import AuthContext

if TYPE_CHECKING:
    from rest_framework.request import Request

API_KEY_PREFIX = "kai_"
#: failed API-key lookups per client address: a brake on guessing keys (docs/security.md)
API_KEY_GUESSES = backoff.Policy("apikey", allowed_setting="KAI_AUTH_ADDRESS_FAILURES_ALLOWED")
logger = logging.getLogger("kai.security")
ORG_HEADER = "HTTP_X_ORGANIZATION"


def _bearer(request: Request) -> str | None:
    header = authentication.get_authorization_header(request)
    if not header:
        return None
    parts = header.split()
    if parts[0].lower() != b"bearer":
        return None
    if len(parts) != 2:
        raise exceptions.AuthenticationFailed(_("Malformed Authorization header: expected 'Bearer <token>'."))
    try:
        return parts[1].decode("ascii")
    except UnicodeDecodeError:
        raise exceptions.AuthenticationFailed(_("Authorization token contains invalid characters."))


def revoked_jti_key(jti: str) -> str:
    return f"revoked-jti:{jti}"


def revoke_access_token(jti: str, expires_at: datetime) -> None:
    """Make an access token unusable at once, in every process (shared Redis)."""
    ttl = int((expires_at - datetime.now(UTC)).total_seconds()) + 1
    if ttl > 0:
        cache.set(revoked_jti_key(jti), 1, timeout=ttl)


def is_access_token_revoked(jti: str) -> bool:
    return cache.get(revoked_jti_key(jti)) is not None


class OrganizationHeaderError(exceptions.PermissionDenied):
    default_detail = _("Unknown organization, or you are not a member of it.")


class _BearerAuthentication(authentication.BaseAuthentication):
    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


def authenticate_credential(
    raw: str, *, organization_ref: str | None = None, address: str | None = None
) -> tuple[Any, AuthContext]:
    """A bearer credential (JWT access token or ``kai_…`` API key) → ``(user, AuthContext)``.

    The one implementation behind the REST authentication classes and the sockets. Raises
    ``AuthenticationFailed`` (bad/expired/revoked) or ``PermissionDenied`` (organization);
    ``RateLimited`` while ``address`` is locked for guessing API keys.
    """
    if raw.startswith(API_KEY_PREFIX):
        return _authenticate_api_key(raw, organization_ref, address)
    return _authenticate_jwt(raw, organization_ref)


#: raw access token -> its verified claims, per process. A token's signature and claims never
#: change, so a token seen before is not decoded and verified again (HMAC + JSON + claim checks);
#: only its expiry is re-checked on every use (revocation is the Redis probe's job, as before).
_verified: dict[str, dict[str, Any]] = {}
_VERIFIED_MAX = 10_000


def _access_claims(raw: str) -> dict[str, Any]:
    claims = _verified.get(raw)
    if claims is not None:
        if claims["exp"] > time.time():
            return claims
        _verified.pop(raw, None)  # expired: simplejwt's own check below answers it
    try:
        token = AccessToken(raw)  # type: ignore[arg-type]
    except TokenError as exc:
        expired = "expired" in str(exc).lower()
        raise exceptions.AuthenticationFailed(
            _("Access token has expired.") if expired else _("Access token is invalid."),
            code=codes.TOKEN_EXPIRED if expired else codes.UNAUTHORIZED,
        )
    claims = dict(token.payload)
    if isinstance(claims.get("exp"), (int, float)):
        if len(_verified) >= _VERIFIED_MAX:
            _verified.clear()
        _verified[raw] = claims
    return claims


def _forget_verified(*, setting: str, **kwargs: Any) -> None:
    if setting in ("SIMPLE_JWT", "SECRET_KEY"):
        _verified.clear()


setting_changed.connect(_forget_verified, dispatch_uid="kai-jwt-verified-cache")


def _load_identity(
    user_id: str, organization_ref: str | None, entry: authcache._Entry | None, probe: authcache.Probe
) -> tuple[Any, Any]:
    """The user and membership read from the database (the cache missed or is stale), cached again
    under the versions they were read at."""
    user, membership = ports.user_and_membership(user_id=user_id, organization_ref=organization_ref)
    if user is not None:
        org_id = str(membership.organization_id) if membership is not None else None
        if org_id is None:
            org_version = None
        elif entry is not None and entry.org_id == org_id:
            org_version = probe.org_version
        else:
            org_version = authcache.org_version(org_id)
        authcache.store(user_id, organization_ref, (probe.user_version, org_version), user, membership)
    return user, membership


def _authenticate_jwt(
    raw: str, organization_ref: str | None, request: Request | None = None
) -> tuple[Any, AuthContext]:
    """A JWT → ``(user, AuthContext)``. With ``request`` (REST, not sockets) the organization's
    rate-limit count rides in the same Redis round trip as the revocation check (authcache)."""
    token = _access_claims(raw)
    jti = token.get("jti")
    if not jti:
        raise exceptions.AuthenticationFailed(_("Access token has been revoked."), code=codes.UNAUTHORIZED)
    user_id = str(token.get("user_id") or "")
    entry = authcache.lookup(user_id, organization_ref)
    counter = None
    if request is not None and entry is not None and entry.org_id is not None:
        counter = ratelimit.counter_for(subject=entry.org_id, subject_type="organization", plan=entry.org_plan)
    probe = authcache.probe(
        revoked_key=sharedcache.backend().make_key(revoked_jti_key(jti)),
        user_id=user_id,
        org_id=entry.org_id if entry is not None else None,
        counter=counter,
        member_org_ids=authcache.member_org_ids(entry),
    )
    if probe.revoked:
        raise exceptions.AuthenticationFailed(_("Access token has been revoked."), code=codes.UNAUTHORIZED)
    cache_key = (user_id, organization_ref)
    if entry is not None and entry.versions == (probe.user_version, probe.org_version):
        user, membership = entry.materialize()
        handle = authcache.handle_for(cache_key, entry, probe)
    else:
        handle = authcache.handle_for(cache_key, None, probe)
        user, membership = _load_identity(user_id, organization_ref, entry, probe)
    if user is None:
        raise exceptions.AuthenticationFailed(_("User not found or inactive."), code=codes.UNAUTHORIZED)
    if membership is None and organization_ref:
        raise OrganizationHeaderError()
    if (
        counter is not None
        and request is not None  # (a counter is only made for a request)
        and probe.count is not None
        and membership is not None
        and entry is not None
        and str(membership.organization_id) == entry.org_id
    ):
        ratelimit.remember(request, counter.usage(probe.count))
    ctx = AuthContext(
        kind="jwt",
        organization=membership.organization if membership else None,
        role=membership.role if membership else None,
        membership=membership,
        session_id=str(token.get("sid") or jti),
        expires_at=datetime.fromtimestamp(token["exp"], tz=UTC),
        claims=dict(token),
        cache=handle,
    )
    _note_actor(user, ctx, "user")
    return user, ctx


def _authenticate_api_key(
    raw: str, organization_ref: str | None, address: str | None = None
) -> tuple[Any, AuthContext]:
    if address:
        backoff.refuse_if_locked(
            [(API_KEY_GUESSES, address)], "Too many invalid API keys from this address; try again later."
        )
    api_key = ports.api_key_authenticate(raw_key=raw)
    if api_key is None:
        if address and backoff.record_failure(API_KEY_GUESSES, address):
            logger.warning("address lock: API-key guessing from %s", address)
        raise exceptions.AuthenticationFailed(_("API key is invalid, expired or revoked."), code=codes.UNAUTHORIZED)
    if organization_ref and not _matches_org(api_key.organization, organization_ref):
        raise OrganizationHeaderError(_("This API key is bound to another organization."))
    ctx = AuthContext(
        kind="api_key",
        organization=api_key.organization,
        role=api_key.role,
        api_key=api_key,
        session_id=f"key:{api_key.pk}",
        expires_at=api_key.expires_at,
    )
    _note_actor(api_key.created_by, ctx, "agent" if api_key.role == "agent" else "api_key")
    return api_key.created_by, ctx


def credential_still_valid(ctx: AuthContext) -> bool:
    """For long-lived connections: has the credential expired or been revoked since?"""
    now = datetime.now(UTC)
    if ctx.expires_at is not None and ctx.expires_at <= now:
        return False
    if ctx.kind == "jwt":
        return not is_access_token_revoked(ctx.claims.get("jti", ""))
    return ctx.api_key.pk in ports.live_api_key_ids(key_ids={ctx.api_key.pk})


class JWTAuthentication(_BearerAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, AuthContext] | None:
        raw = _bearer(request)
        if raw is None or raw.startswith(API_KEY_PREFIX):
            return None
        return _authenticate_jwt(raw, request.META.get(ORG_HEADER), request)


class ApiKeyAuthentication(_BearerAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, AuthContext] | None:
        raw = _bearer(request)
        if raw is None or not raw.startswith(API_KEY_PREFIX):
            return None
        return _authenticate_api_key(raw, request.META.get(ORG_HEADER), client_address(request))


def _matches_org(organization: Any, ref: str) -> bool:
    try:
        return bool(uuid.UUID(ref) == organization.pk)
    except ValueError:
        return bool(ref == organization.slug)


def _note_actor(user: Any, ctx: AuthContext, actor_type: str) -> None:
    state = request_state()
    state.update(
        actor_type=actor_type,
        user=str(user.pk),
        organization=str(ctx.organization.pk) if ctx.organization is not None else "-",
    )
