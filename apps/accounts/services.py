"""Writes of accounts data: registration, tokens, API keys, magic links, preferences, config."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import uuid
from datetime import UTC, datetime, timedelta

import jwt
from django.conf import settings
from django.contrib.auth import password_validation
from django.contrib.auth.hashers import make_password
from django.contrib.auth.tokens import default_token_generator
from django.core import mail
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.http import urlsafe_base64_decode, urlsafe_base64_encode
from django.utils.text import slugify
from rest_framework import exceptions
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken, Token
from rest_framework_simplejwt.utils import datetime_from_epoch

from apps.accounts import hooks, selectors, throttle
from apps.accounts.models import ApiKey, MagicLink, Membership, Organization, Plan, User, default_preferences
from kai_platform.api.errors import Conflict, Forbidden, codes
from kai_platform.ports import audit_covered, audit_record, publish, snapshot  # audit, events: DESIGN §15
from kai_platform.tenancy import authcache
from kai_platform.tenancy.authentication import API_KEY_PREFIX, revoke_access_token
from kai_platform.tenancy.roles import ROLE_RANK, Role, role_at_most

_ALPHABET = string.ascii_letters + string.digits


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# --- organizations & users --------------------------------------------------------------------


def _unique_slug(name: str) -> str:
    base = slugify(name)[:48] or "org"
    slug = base
    while Organization.objects.filter(slug=slug).exists():
        slug = f"{base}-{secrets.token_hex(3)}"
    return slug


def organization_create(*, name: str, owner: User, plan: str = Plan.STANDARD, slug: str | None = None) -> Organization:
    with transaction.atomic():
        organization = Organization.objects.create(name=name, slug=slug or _unique_slug(name), plan=plan)
        membership = Membership.objects.create(user=owner, organization=organization, role=Role.OWNER)
        audit_record(
            organization=organization,
            actor=owner,
            action="organization.create",
            instance=organization,
            after=snapshot(organization),
        )
        audit_record(
            organization=organization,
            actor=owner,
            action="membership.create",
            instance=membership,
            after=snapshot(membership),
        )
    return organization


def user_register(*, email: str, password: str, org_name: str, full_name: str = "") -> tuple[User, Organization]:
    """Seed 003: registering creates an organization and its owner."""
    email = email.strip().lower()
    candidate = User(email=email, full_name=full_name)
    try:
        password_validation.validate_password(password, user=candidate)
    except DjangoValidationError as exc:
        raise exceptions.ValidationError({"password": list(exc.messages)})
    try:
        with transaction.atomic():
            user = User.objects.create_user(email=email, password=password, full_name=full_name)
            with audit_covered():  # one row for the whole registration
                organization = organization_create(name=org_name, owner=user)
            audit_record(
                organization=organization,
                actor=user,
                action="user.register",
                instance=user,
                after={
                    **snapshot(user, ["id", "email", "full_name"]),
                    "organization": {"id": str(organization.pk), "name": organization.name, "slug": organization.slug},
                    "role": Role.OWNER.value,
                },
            )
    except IntegrityError:
        raise Conflict(
            "An account with this email already exists.", errors=[{"field": "email", "message": "already registered"}]
        )
    return user, organization


def membership_add(*, organization: Organization, user: User, role: str, actor) -> Membership:
    with transaction.atomic():
        membership = Membership.objects.create(organization=organization, user=user, role=role)
        audit_record(
            organization=organization,
            actor=actor,
            action="membership.create",
            instance=membership,
            after=snapshot(membership),
        )
    return membership


def membership_remove(*, membership: Membership, actor) -> None:
    """Removing a member also revokes the API keys they made in that organization."""
    with transaction.atomic():
        ApiKey.objects.for_org(membership.organization).filter(
            created_by=membership.user, revoked_at__isnull=True
        ).update(revoked_at=timezone.now())
        audit_record(
            organization=membership.organization,
            actor=actor,
            action="membership.delete",
            instance=membership,
            before=snapshot(membership),
        )
        membership.delete()


# --- JWT sessions -----------------------------------------------------------------------------


def _token_pair(refresh: RefreshToken, user: User) -> dict:
    access = refresh.access_token
    return {
        "access_token": str(access),
        "refresh_token": str(refresh),
        "expires_in": int(settings.ACCESS_TOKEN_LIFETIME.total_seconds()),
        "token_type": "Bearer",
        "user_id": str(user.pk),
    }


def _new_refresh(user: User, session_id: str) -> RefreshToken:
    """``RefreshToken.for_user`` with the session id (``sid``, kept through rotation) in the token
    before it is stored as outstanding, so a stored token tells its session."""
    # the token alone, not yet outstanding; the stubs type the bound classmethod without __func__
    refresh = Token.for_user.__func__(RefreshToken, user)  # type: ignore[attr-defined]
    refresh["sid"] = session_id
    OutstandingToken.objects.create(
        user=user,
        jti=refresh["jti"],
        token=str(refresh),
        created_at=refresh.current_time,
        expires_at=datetime_from_epoch(refresh["exp"]),
    )
    return refresh


def auth_issue_tokens(*, user: User) -> dict:
    return _token_pair(_new_refresh(user, uuid.uuid4().hex), user)


def auth_login(*, email: str, password: str, address: str, step_up_code: str | None = None) -> tuple[User, dict]:
    """Sign in with a password. Failures are counted per account and per account + address
    (apps.accounts.throttle); while either is locked every attempt answers 429."""
    account = throttle.normalize(email)
    throttle.guard(throttle.PASSWORD, account=account, address=address)
    user = User.objects.filter(email__iexact=account, is_active=True).first()
    if user is None:
        make_password(password)  # same work as a real check, so timing does not reveal accounts
    if user is None or not user.check_password(password):
        throttle.failed(throttle.PASSWORD, account=account, address=address, user=user)
        raise exceptions.AuthenticationFailed("Invalid email or password.", code=codes.INVALID_CREDENTIALS)
    hooks.run_password_login_checks(
        user=user, step_up_code=step_up_code
    )  # e.g. an organization that signs in only through SSO
    throttle.succeeded(throttle.PASSWORD, account=account, address=address)
    return user, auth_issue_tokens(user=user)


class _BadRefresh(exceptions.AuthenticationFailed):
    """A refresh token this server never issued (forged or mangled), as opposed to a used or
    expired one: only these count as guesses."""


def _consume_refresh(raw: str) -> tuple[RefreshToken, User]:
    """Validate a refresh token and blacklist it; exactly one concurrent caller wins."""
    try:
        token = RefreshToken(raw)  # type: ignore[arg-type]  # simplejwt annotates the str it takes as Token
    except TokenError as exc:
        expired = "expired" in str(exc).lower()
        failure = exceptions.AuthenticationFailed if expired or "blacklisted" in str(exc).lower() else _BadRefresh
        raise failure(
            "Refresh token has expired." if expired else "Refresh token is invalid or has already been used.",
            code=codes.TOKEN_EXPIRED if expired else codes.UNAUTHORIZED,
        )
    outstanding = OutstandingToken.objects.filter(jti=token["jti"]).select_related("user").first()
    if outstanding is None:
        raise _BadRefresh("Refresh token is invalid.", code=codes.UNAUTHORIZED)
    if outstanding.user is None or not outstanding.user.is_active:
        raise exceptions.AuthenticationFailed("Refresh token is invalid.", code=codes.UNAUTHORIZED)
    try:
        with transaction.atomic():
            BlacklistedToken.objects.create(token=outstanding)
    except IntegrityError:
        raise exceptions.AuthenticationFailed("Refresh token has already been used.", code=codes.UNAUTHORIZED)
    return token, outstanding.user


def auth_refresh(*, refresh_token: str, address: str) -> dict:
    """A new token pair for a refresh token (used once). Tokens this server never issued are
    counted per address (a replayed or expired one is an honest client's race, not a guess)."""
    throttle.guard_address(throttle.BAD_TOKEN, address=address)
    try:
        old, user = _consume_refresh(refresh_token)
    except _BadRefresh:
        throttle.failed_address(throttle.BAD_TOKEN, address=address)
        raise
    return _token_pair(_new_refresh(user, old.get("sid") or uuid.uuid4().hex), user)


def auth_logout(*, user: User, access_claims: dict | None, refresh_token: str | None) -> None:
    """Blacklist the refresh token and kill the presenting access token at once."""
    if refresh_token:
        try:
            token = RefreshToken(refresh_token)  # type: ignore[arg-type]  # simplejwt: the str it takes is typed Token
        except TokenError:
            token = None  # already used or expired: nothing left to revoke
        if token is not None:
            if str(token.get("user_id")) != str(user.pk):
                raise exceptions.ValidationError({"refresh_token": ["This refresh token belongs to another user."]})
            outstanding = OutstandingToken.objects.filter(jti=token["jti"]).first()
            if outstanding is not None:
                BlacklistedToken.objects.get_or_create(token=outstanding)
    if access_claims and access_claims.get("jti"):
        expires_at = datetime.fromtimestamp(access_claims["exp"], tz=UTC)
        revoke_access_token(access_claims["jti"], expires_at)


def user_sessions_revoke(*, user: User) -> int:
    """Sign the user out everywhere: every refresh token blacklisted, every API key they made
    revoked, cached credentials re-read (an inactive user then fails on the next request, and the
    socket watcher closes their sockets). Returns how many refresh tokens were blacklisted."""
    with transaction.atomic():
        live = OutstandingToken.objects.filter(user=user, expires_at__gt=timezone.now()).exclude(
            blacklistedtoken__isnull=False
        )
        tokens = list(live)
        BlacklistedToken.objects.bulk_create([BlacklistedToken(token=t) for t in tokens], ignore_conflicts=True)
        ApiKey.objects.filter(created_by=user, revoked_at__isnull=True).update(revoked_at=timezone.now())
        authcache.bump_user(user.pk)
    return len(tokens)


# --- magic links ------------------------------------------------------------------------------


def magic_link_request(*, email: str, address: str) -> None:
    """Email a single-use sign-in link if the address belongs to an active user (and say nothing
    either way to the caller). Every request counts towards the account's mail lock."""
    account = throttle.normalize(email)
    throttle.guard(throttle.MAIL, account=account, address=address)
    user = User.objects.filter(email__iexact=account, is_active=True).first()
    throttle.failed(throttle.MAIL, account=account, address=address, user=user)
    if user is None:
        return
    token = secrets.token_urlsafe(32)
    MagicLink.objects.create(
        user=user, token_hash=_digest(token), expires_at=timezone.now() + settings.MAGIC_LINK_LIFETIME
    )
    link = f"{settings.KAI_PUBLIC_URL}/api/v1/auth/verify-magic?token={token}"
    minutes = int(settings.MAGIC_LINK_LIFETIME.total_seconds() // 60)
    mail.send_mail(
        subject="Your kAI sign-in link",
        message=f"Sign in to kAI: {link}\n\nThe link works once and expires in {minutes} minutes.",
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[user.email],
    )


def magic_link_verify(*, token: str, address: str) -> tuple[User, dict]:
    throttle.guard_address(throttle.BAD_TOKEN, address=address)
    now = timezone.now()
    with transaction.atomic():
        link = (
            MagicLink.objects.select_for_update()
            .select_related("user")
            .filter(token_hash=_digest(token or ""), used_at__isnull=True, expires_at__gt=now, user__is_active=True)
            .first()
        )
        if link is not None:
            link.used_at = now
            link.save(update_fields=["used_at"])
    if link is None:
        throttle.failed_address(throttle.BAD_TOKEN, address=address)
        raise exceptions.AuthenticationFailed(
            "This sign-in link is invalid, expired or already used.", code=codes.INVALID_CREDENTIALS
        )
    throttle.succeeded(throttle.MAIL, account=throttle.normalize(link.user.email), address=address)
    hooks.run_password_login_checks(user=link.user)
    return link.user, auth_issue_tokens(user=link.user)


# --- passwords --------------------------------------------------------------------------------


def _validate_new_password(password: str, user: User, field: str) -> None:
    """Django's validators (settings.AUTH_PASSWORD_VALIDATORS: length, similarity, common list, numeric)."""
    try:
        password_validation.validate_password(password, user=user)
    except DjangoValidationError as exc:
        raise exceptions.ValidationError({field: list(exc.messages)})


def _session_of(raw_refresh: str) -> str | None:
    """The session (``sid``) a stored refresh token belongs to (it was verified when issued)."""
    try:
        return jwt.decode(raw_refresh, options={"verify_signature": False}).get("sid")
    except jwt.PyJWTError:
        return None


def refresh_tokens_revoke(*, user: User, keep_session: str | None = None) -> int:
    """Blacklist the user's live refresh tokens except those of ``keep_session``; how many."""
    live = OutstandingToken.objects.filter(user=user, expires_at__gt=timezone.now(), blacklistedtoken__isnull=True)
    doomed = [token for token in live if keep_session is None or _session_of(token.token) != keep_session]
    BlacklistedToken.objects.bulk_create([BlacklistedToken(token=token) for token in doomed], ignore_conflicts=True)
    return len(doomed)


def _password_set(*, user: User, password: str, action: str, keep_session: str | None) -> int:
    _validate_new_password(password, user, "new_password")
    with transaction.atomic():
        user.set_password(password)
        user.save(update_fields=["password", "updated_at"])
        revoked = refresh_tokens_revoke(user=user, keep_session=keep_session)
        for membership in user.memberships.select_related("organization"):
            audit_record(
                organization=membership.organization,
                actor=user,
                action=action,
                instance=user,
                after={"sessions_revoked": revoked},
            )
    return revoked


def user_password_change(
    *, user: User, current_password: str, new_password: str, session_id: str | None, address: str
) -> int:
    """Change the password after re-checking the current one (counted like a sign-in); the
    user's other sessions lose their refresh tokens. Returns how many were revoked."""
    account = throttle.normalize(user.email)
    throttle.guard(throttle.PASSWORD, account=account, address=address)
    if not user.check_password(current_password):
        throttle.failed(throttle.PASSWORD, account=account, address=address, user=user)
        # 403 as for the step-up password re-check: the body is well formed, the caller did not prove who it is
        raise Forbidden(
            "The current password is wrong.",
            code=codes.INVALID_CREDENTIALS,
            errors=[{"field": "current_password", "message": "The current password is wrong."}],
        )
    throttle.succeeded(throttle.PASSWORD, account=account, address=address)
    return _password_set(user=user, password=new_password, action="user.password_change", keep_session=session_id)


def _reset_token(user: User) -> str:
    return f"{urlsafe_base64_encode(str(user.pk).encode())}.{default_token_generator.make_token(user)}"


def _user_of_reset_token(token: str) -> User | None:
    uid, _, secret = (token or "").partition(".")
    try:
        user = User.objects.filter(pk=urlsafe_base64_decode(uid).decode(), is_active=True).first()
    except (ValueError, DjangoValidationError):
        return None
    return user if user is not None and default_token_generator.check_token(user, secret) else None


def user_password_reset_request(*, email: str, address: str) -> None:
    """Email a reset token if the address belongs to an active user with a password (say nothing
    either way). Counted with the sign-in link requests of the account."""
    account = throttle.normalize(email)
    throttle.guard(throttle.MAIL, account=account, address=address)
    user = User.objects.filter(email__iexact=account, is_active=True).first()
    throttle.failed(throttle.MAIL, account=account, address=address, user=user)
    if user is None or not user.has_usable_password():
        return
    token = _reset_token(user)
    hours = max(1, settings.PASSWORD_RESET_TIMEOUT // 3600)
    mail.send_mail(
        subject="Reset your kAI password",
        message=(
            f'To choose a new password, POST {{"token": "{token}", "new_password": "..."}} to '
            f"{settings.KAI_PUBLIC_URL}/api/v1/auth/password-reset/confirm\n\n"
            f"The token works once and expires within {hours} hour(s). "
            "If you did not ask for it, ignore this message."
        ),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[user.email],
    )


def user_password_reset_confirm(*, token: str, new_password: str, address: str) -> User:
    """Set a new password with a reset token (single use: the token depends on the old hash);
    every session of the user loses its refresh tokens, and the account's sign-in lock is lifted."""
    throttle.guard_address(throttle.BAD_TOKEN, address=address)
    user = _user_of_reset_token(token)
    if user is None:
        throttle.failed_address(throttle.BAD_TOKEN, address=address)
        raise exceptions.ValidationError({"token": ["This reset token is invalid, expired or already used."]})
    _password_set(user=user, password=new_password, action="user.password_reset", keep_session=None)
    throttle.succeeded(throttle.PASSWORD, account=throttle.normalize(user.email), address=address)
    return user


# --- API keys ---------------------------------------------------------------------------------


def api_key_create(
    *,
    organization: Organization,
    created_by: User,
    creator_role: str,
    name: str,
    role: str | None = None,
    expires_at=None,
) -> tuple[ApiKey, str]:
    """Returns the key and its one-time clear text ``kai_<prefix>_<secret>``."""
    role = role or creator_role
    if not role_at_most(role, creator_role):
        raise exceptions.ValidationError({"role": [f"A '{creator_role}' cannot create a key with role '{role}'."]})
    if expires_at is not None and expires_at <= timezone.now():
        raise exceptions.ValidationError({"expires_at": ["Must be in the future."]})
    prefix = "".join(secrets.choice(_ALPHABET) for _ in range(10))
    secret = "".join(secrets.choice(_ALPHABET) for _ in range(40))
    raw = f"{API_KEY_PREFIX}{prefix}_{secret}"
    with transaction.atomic():
        api_key = ApiKey.objects.create(
            organization=organization,
            created_by=created_by,
            name=name,
            prefix=prefix,
            key_hash=_digest(raw),
            role=role,
            expires_at=expires_at,
        )
        audit_record(
            organization=organization,
            actor=created_by,
            action="api_key.create",
            instance=api_key,
            after=snapshot(api_key),
        )
    return api_key, raw


def api_key_revoke(*, api_key: ApiKey, actor) -> ApiKey:
    with transaction.atomic():
        before = snapshot(api_key)
        if api_key.revoked_at is None:
            api_key.revoked_at = timezone.now()
            api_key.save(update_fields=["revoked_at", "updated_at"])
        audit_record(
            organization=api_key.organization,
            actor=actor,
            action="api_key.revoke",
            instance=api_key,
            before=before,
            after=snapshot(api_key),
        )
        publish(
            api_key.organization,
            "api_key.revoked",
            {"api_key_id": str(api_key.pk), "name": api_key.name},
            actor=actor,
            owner=api_key.created_by_id,
            component="accounts",
        )
    return api_key


_LAST_USED_RESOLUTION = timedelta(seconds=60)


def api_key_authenticate(*, raw_key: str) -> ApiKey | None:
    """The active key for a clear-text ``kai_…`` value, or None. Touches ``last_used_at`` at most
    once a minute so authentication stays a read."""
    body = raw_key[len(API_KEY_PREFIX) :]
    prefix, sep, _secret = body.partition("_")
    if not sep or not prefix:
        return None
    api_key = selectors.api_key_by_prefix(prefix=prefix)
    if api_key is None or not hmac.compare_digest(api_key.key_hash, _digest(raw_key)):
        return None
    if not api_key.is_active or api_key.created_by is None or not api_key.created_by.is_active:
        return None
    if not api_key.organization.is_active:
        return None
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at > _LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key


# --- preferences & configuration -------------------------------------------------------------


def preferences_update(*, user: User, changes: dict) -> dict:
    with transaction.atomic():
        before = dict(user.preferences or {})
        merged = {**default_preferences(), **before}
        for key, value in changes.items():
            if key == "notification_settings" and isinstance(value, dict):
                merged[key] = {**merged.get(key, {}), **value}
            else:
                merged[key] = value
        user.preferences = merged
        user.save(update_fields=["preferences", "updated_at"])
        for membership in user.memberships.all()[:1]:
            audit_record(
                organization=membership.organization,
                actor=user,
                action="preferences.update",
                instance=user,
                before={"preferences": before},
                after={"preferences": merged},
            )
    return merged


def _merge(current: dict, changes: dict) -> dict:
    """Shallow merge; a ``null`` value removes the key."""
    merged = dict(current)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def organization_settings_update(*, organization: Organization, actor, changes: dict) -> dict:
    with transaction.atomic():
        # FOR NO KEY UPDATE: rows that reference the organization (events, files) take FOR KEY SHARE on it
        # while holding the events lock this transaction takes next; a plain FOR UPDATE deadlocked with them
        organization = Organization.objects.select_for_update(no_key=True).get(pk=organization.pk)
        before = dict(organization.settings)
        organization.settings = _merge(before, changes)
        organization.save(update_fields=["settings", "updated_at"])
        audit_record(
            organization=organization,
            actor=actor,
            action="config.system.update",
            instance=organization,
            before={"settings": before},
            after={"settings": organization.settings},
        )
        publish(organization, "config.system.updated", {"changed": sorted(changes)}, actor=actor, component="config")
    return organization.settings


def membership_settings_update(*, membership: Membership, actor, changes: dict) -> dict:
    with transaction.atomic():
        membership = Membership.objects.select_for_update().get(pk=membership.pk)
        before = dict(membership.settings)
        membership.settings = _merge(before, changes)
        membership.save(update_fields=["settings"])
        audit_record(
            organization=membership.organization_id and membership.organization,
            actor=actor,
            action="config.user.update",
            instance=membership,
            before={"settings": before},
            after={"settings": membership.settings},
        )
    return membership.settings


def role_choices_for(role: str) -> list[str]:
    return [r for r in Role if ROLE_RANK[r] <= ROLE_RANK[Role(role)]]
