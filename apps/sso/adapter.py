"""django-allauth configured per request from the organizations' SSO connections: no SocialApp
rows (the client secret stays encrypted in ``SSOConnection``), and the login ends in our own
answer (token code / console session) instead of allauth's account pages."""

from __future__ import annotations

import logging

from allauth.core.exceptions import ImmediateHttpResponse
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.models import SocialApp

from apps.sso import saml, services, signin
from apps.sso.models import Protocol, SSOConnection

logger = logging.getLogger("kai.sso")

_PREFIX = "kai-"


def connection_for(provider_id: str | None) -> SSOConnection | None:
    if not provider_id or not provider_id.startswith(_PREFIX):
        return None
    try:
        # platform-wide lookup by the connection's own id (the callback carries no organization)
        return SSOConnection.objects.select_related("organization").get(pk=provider_id[len(_PREFIX) :], is_active=True)
    except (SSOConnection.DoesNotExist, ValueError):
        return None


def _oidc_app(connection: SSOConnection) -> SocialApp:
    return SocialApp(
        provider="openid_connect",
        provider_id=connection.provider_id,
        name=connection.name or "SSO",
        client_id=connection.client_id,
        secret=services.client_secret(connection),
        settings={
            "server_url": connection.issuer_url,
            "oauth_pkce_enabled": True,
            "fetch_userinfo": True,
            "scope": connection.scopes or ["openid", "profile", "email"],
        },
    )


def _saml_app(connection: SSOConnection) -> SocialApp:
    return SocialApp(
        provider="saml",
        provider_id=connection.provider_id,
        name=connection.name or "SSO",
        client_id=connection.provider_id,
        settings=saml.provider_settings(connection),
    )


def app_for(connection: SSOConnection) -> SocialApp:
    return _oidc_app(connection) if connection.protocol == Protocol.OIDC else _saml_app(connection)


class SSOSocialAccountAdapter(DefaultSocialAccountAdapter):
    def list_apps(self, request, provider=None, client_id=None):
        connection = connection_for(client_id if provider == "saml" else provider)
        return [app_for(connection)] if connection is not None else []

    def pre_social_login(self, request, sociallogin):
        connection = connection_for(sociallogin.account.provider)
        state = sociallogin.state or {}
        data = state.get("data") or {}
        if connection is None:
            raise ImmediateHttpResponse(signin.error_response(404, "Unknown SSO connection."))
        if data.get("connection") != str(connection.pk):
            # no stashed state of ours: an unsolicited or replayed answer
            signin.login_refused_audit(connection, "no matching sign-in state (unsolicited or replayed)")
            raise ImmediateHttpResponse(
                signin.error_response(
                    400, "This sign-in answer matches no sign-in started here (replayed or unsolicited)."
                )
            )
        try:
            user, _membership = signin.login_finish(
                connection=connection,
                subject=str(sociallogin.account.uid),
                extra=sociallogin.account.extra_data or {},
                data=data,
                mapped_email=getattr(sociallogin.user, "email", "") or "",
            )
        except signin.SignInRefused as exc:
            signin.login_refused_audit(connection, str(exc))
            raise ImmediateHttpResponse(signin.error_response(exc.status, str(exc)))
        raise ImmediateHttpResponse(signin.answer(request, connection=connection, user=user, data=data))

    def on_authentication_error(self, request, provider, error=None, exception=None, extra_context=None):
        extra_context = extra_context or {}
        reason = extra_context.get("saml_last_error_reason") or (str(exception) if exception else "")
        if not reason and "state_id" in extra_context and not extra_context.get("state"):
            reason = "the answer matches no sign-in started here (state missing, already used or expired)"
        reason = reason or str(error or "authentication failed")
        logger.info("SSO sign-in failed: %s", reason)
        connection = connection_for(getattr(getattr(provider, "app", None), "provider_id", None))
        if connection is not None:
            signin.login_refused_audit(connection, reason)
        raise ImmediateHttpResponse(signin.error_response(401, f"Single sign-on failed: {reason}", code="AUTH_001"))
