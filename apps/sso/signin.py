"""SSO sign-in: start (redirect to the IdP through allauth), finish (checks allauth leaves to the
relying party, just-in-time member, role from claims, audit), one-time codes for API clients."""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import timedelta
from urllib.parse import urlencode, urlsplit

from allauth.socialaccount.adapter import get_adapter
from django.conf import settings
from django.contrib.auth import login as django_login
from django.db import transaction
from django.http import HttpResponseRedirect, JsonResponse
from django.utils import timezone
from rest_framework import exceptions

from apps.accounts.models import Membership, Organization, User
from apps.accounts.services import auth_issue_tokens
from apps.audit.services import audit_record
from apps.events.services import publish
from apps.sso.models import Protocol, ScimUser, SSOConnection, SSOIdentity, SSOLoginCode
from kai_platform.api.errors import codes
from kai_platform.api.exceptions import envelope
from kai_platform.tenancy.roles import ROLE_RANK, Role

#: allowed clock difference with an identity provider (issue: at most 2 minutes)
CLOCK_SKEW_SECONDS = 120
CODE_LIFETIME = timedelta(seconds=60)
MODES = ("api", "console")


class SignInRefused(Exception):
    """The identity provider's answer does not let this person in (reason in the message)."""

    def __init__(self, reason: str, status: int = 403):
        super().__init__(reason)
        self.status = status


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def error_response(status: int, detail: str, code: str | None = None) -> JsonResponse:
    return JsonResponse(envelope(status=status, detail=detail, code=code), status=status)


def redirect_uri_allowed(connection: SSOConnection, uri: str) -> bool:
    """A listed URI, or a loopback one (native apps, RFC 8252 §7.3)."""
    if uri in connection.redirect_uris:
        return True
    parts = urlsplit(uri)
    return parts.scheme == "http" and parts.hostname in {"127.0.0.1", "::1", "localhost"}


# --- start ------------------------------------------------------------------------------------


def login_start(request, *, connection: SSOConnection, mode: str, redirect_uri: str = "", next_url: str = ""):
    """The redirect to the IdP. State (and PKCE for OIDC) are allauth's; the OIDC nonce is ours:
    stashed in the same single-use state and checked against the ID token in ``login_finish``."""
    provider = get_adapter(request).get_provider(request, provider=connection.provider_id)
    data = {"connection": str(connection.pk), "mode": mode, "redirect_uri": redirect_uri, "next": next_url}
    if connection.protocol == Protocol.OIDC:
        nonce = secrets.token_urlsafe(24)
        data["nonce"] = nonce
        auth_params = {**provider.get_auth_params(), "nonce": nonce}
        return provider.redirect(request, process="login", data=data, auth_params=auth_params)
    return provider.redirect(request, process="login", data=data)


# --- finish -----------------------------------------------------------------------------------


def _oidc_claims(connection: SSOConnection, extra: dict, data: dict) -> dict:
    id_token = extra.get("id_token") or {}
    if not id_token:
        raise SignInRefused("The identity provider sent no ID token.")
    if not data.get("nonce") or id_token.get("nonce") != data["nonce"]:
        raise SignInRefused("The ID token's nonce does not match this sign-in.")
    now = time.time()
    if float(id_token.get("iat", 0)) > now + CLOCK_SKEW_SECONDS:
        raise SignInRefused("The ID token was issued in the future (clock skew over 2 minutes).")
    return {**id_token, **(extra.get("userinfo") or {})}


def _saml_claims(extra: dict) -> dict:
    """SAML attributes are lists; single values are unwrapped, ``groups``-like ones kept as lists."""
    claims = {}
    for name, values in (extra or {}).items():
        short = name.rsplit("/", 1)[-1]
        value = values[0] if isinstance(values, list) and len(values) == 1 else values
        claims[name] = value
        claims.setdefault(short, value)
    return claims


def mapped_role(connection: SSOConnection, claims: dict) -> str:
    """The highest role any of the claim's values maps to, else the connection's default."""
    values = claims.get(connection.role_claim) if connection.role_claim else None
    if values is None:
        return connection.default_role
    if isinstance(values, str):
        values = [values]
    roles = [connection.role_mapping[v] for v in values if v in connection.role_mapping]
    return max(roles, key=lambda r: ROLE_RANK[Role(r)]) if roles else connection.default_role


def _email_allowed(connection: SSOConnection, email: str) -> None:
    domain = email.rsplit("@", 1)[-1].lower()
    if domain not in connection.allowed_domains:
        raise SignInRefused(f"Email domain '{domain}' is not allowed for this organization.")
    if not (connection.domains_confirmed_by_staff or domain in connection.verified_domains):
        raise SignInRefused(f"Ownership of '{domain}' is not proved yet (DNS TXT record or staff confirmation).")


def _user_for(connection, subject: str, email: str, name: str, claims: dict):
    organization = connection.organization
    identity = (
        SSOIdentity.objects.for_org(organization)
        .filter(connection=connection, subject=subject)
        .select_related("user")
        .first()
    )
    if identity is not None:
        return identity.user, identity, False
    user = User.objects.filter(email__iexact=email).first()
    created = user is None
    if user is None:
        user = User.objects.create_user(email=email, password=None, full_name=name[:200])
        audit_record(
            organization=organization,
            actor=user,
            action="sso.user.create",
            instance=user,
            after={"id": str(user.pk), "email": email, "connection": str(connection.pk)},
        )
    identity = SSOIdentity.objects.create(
        organization=organization, connection=connection, user=user, subject=subject, email=email
    )
    audit_record(
        organization=organization,
        actor=user,
        action="sso.link",
        instance=identity,
        after={"user": str(user.pk), "subject": subject, "email": email, "protocol": connection.protocol},
    )
    return user, identity, created


def _sync_membership(connection, user, role: str) -> Membership:
    organization = connection.organization
    membership = Membership.objects.filter(organization=organization, user=user).first()
    if membership is None:
        membership = Membership.objects.create(organization=organization, user=user, role=role)
        audit_record(
            organization=organization,
            actor=user,
            action="sso.membership.create",
            instance=membership,
            after={"user": str(user.pk), "role": role},
        )
    elif membership.role != role and membership.role != Role.OWNER:  # owners are managed in the platform
        before = membership.role
        membership.role = role
        membership.save(update_fields=["role"])
        audit_record(
            organization=organization,
            actor=user,
            action="sso.role.change",
            instance=membership,
            before={"role": before},
            after={"role": role},
        )
    return membership


def login_finish(
    *, connection: SSOConnection, subject: str, extra: dict, data: dict, mapped_email: str = ""
) -> tuple[User, Membership]:
    """Checks the answer, then links or creates the user and the membership (role from claims)."""
    if not connection.is_active:
        raise SignInRefused("This SSO connection is disabled.")
    if connection.protocol == Protocol.OIDC:
        claims = _oidc_claims(connection, extra, data)
        if claims.get("email_verified") is False:
            raise SignInRefused("The identity provider has not verified this email address.")
    else:
        claims = _saml_claims(extra)
        claims.setdefault("email", mapped_email)  # from the provider's attribute mapping (SAML OIDs)
    email = str(claims.get("email") or claims.get("emailaddress") or claims.get("mail") or "").strip().lower()
    if not email or "@" not in email:
        raise SignInRefused("The identity provider sent no email address.")
    _email_allowed(connection, email)
    role = mapped_role(connection, claims)
    with transaction.atomic():
        user, identity, _ = _user_for(connection, subject, email, str(claims.get("name") or ""), claims)
        if not user.is_active:
            raise SignInRefused("This account is deactivated.")
        if ScimUser.objects.for_org(connection.organization).filter(user=user, active=False).exists():
            raise SignInRefused("Your identity provider has deactivated your account here.")
        membership = _sync_membership(connection, user, role)
        identity.claims = {k: v for k, v in claims.items() if isinstance(v, (str, int, float, bool, list))}
        identity.last_login_at = timezone.now()
        identity.save(update_fields=["claims", "last_login_at", "updated_at"])
        audit_record(
            organization=connection.organization,
            actor=user,
            action="sso.login",
            instance=identity,
            after={
                "user": str(user.pk),
                "email": email,
                "role": membership.role,
                "protocol": connection.protocol,
                "mode": data.get("mode"),
            },
        )
        publish(
            connection.organization,
            "sso.login",
            {"user_id": str(user.pk), "protocol": connection.protocol},
            actor=user,
            component="sso",
        )
    return user, membership


def login_refused_audit(connection: SSOConnection, reason: str) -> None:
    audit_record(
        organization=connection.organization,
        actor=None,
        action="sso.login.refused",
        instance=connection,
        after={"reason": reason, "protocol": connection.protocol},
    )


# --- the answer to the browser / API client ----------------------------------------------------


def code_issue(*, user: User, organization: Organization) -> str:
    code = secrets.token_urlsafe(32)
    SSOLoginCode.objects.create(
        code_hash=_digest(code), user=user, organization=organization, expires_at=timezone.now() + CODE_LIFETIME
    )
    return code


def code_exchange(*, code: str) -> tuple[User, Organization, dict]:
    """The token pair for a one-time code: works once, within 60 s."""
    now = timezone.now()
    with transaction.atomic():
        updated = SSOLoginCode.objects.filter(
            code_hash=_digest(code or ""), used_at__isnull=True, expires_at__gt=now
        ).update(used_at=now)
        row = SSOLoginCode.objects.select_related("user", "organization").filter(code_hash=_digest(code or "")).first()
    if not updated or row is None or not row.user.is_active:
        raise exceptions.AuthenticationFailed(
            "This sign-in code is invalid, expired or already used.", code=codes.INVALID_CREDENTIALS
        )
    return row.user, row.organization, auth_issue_tokens(user=row.user)


def answer(request, *, connection: SSOConnection, user: User, data: dict):
    """Console: a Django session and a redirect into the admin. API: a one-time code, sent to the
    client's redirect URI or shown as JSON."""
    if data.get("mode") == "console":
        if not user.is_staff:
            return error_response(403, "Only platform staff may use the operator console.")
        django_login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        next_url = data.get("next") or "/admin/"
        return HttpResponseRedirect(
            next_url if next_url.startswith("/") and not next_url.startswith("//") else "/admin/"
        )
    code = code_issue(user=user, organization=connection.organization)
    redirect_uri = data.get("redirect_uri")
    if redirect_uri:
        sep = "&" if urlsplit(redirect_uri).query else "?"
        return HttpResponseRedirect(f"{redirect_uri}{sep}{urlencode({'code': code})}")
    return JsonResponse(
        {
            "code": code,
            "expires_in": int(CODE_LIFETIME.total_seconds()),
            "organization": connection.organization.slug,
            "exchange_url": f"{settings.KAI_PUBLIC_URL}/api/v1/auth/sso/exchange",
        }
    )
