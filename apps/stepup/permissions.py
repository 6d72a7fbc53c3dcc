"""Guarding the sensitive operations of docs/stepup.md (credential store/retrieve/delete, system
modifications, agent configuration changes, workflow creation/modification).

When the request's organization sets ``require_step_up`` (``config/system``), such an operation
needs a fresh step-up grant of the requesting session, else 403 ``AUTH_002``. A WebAuthn grant
always counts, and so does a backup code's; a password re-check grant counts for users with no registered authenticator,
unless the organization also sets ``step_up_password_fallback: false``.

Routes that answer a stored secret in clear (or all of them, as a backup) need a grant whatever
the organization's setting: ``step_up_always_actions`` on the view, or ``check_step_up(request,
always=True)``.

Three ways to apply it:

* ``permission_classes = [*api_settings.DEFAULT_PERMISSION_CLASSES, RequiresStepUp]`` with
  ``step_up_actions = {"create", "update", ...}`` on the view (default: every unsafe method);
* ``@requires_step_up`` on a view method or ``@action``;
* ``check_step_up(request)`` inside a view, before calling the service.
"""

from __future__ import annotations

from functools import wraps

from rest_framework import permissions

from apps.stepup import services
from apps.stepup.models import WebAuthnCredential
from kai_platform.api.errors import StepUpRequired
from kai_platform.tenancy.context import get_auth_context


def organization_requires_step_up(organization) -> bool:
    return bool(organization is not None and (organization.settings or {}).get("require_step_up"))


def password_fallback_allowed(organization) -> bool:
    return (organization.settings or {}).get("step_up_password_fallback", True) is not False


def acceptable_methods(*, user, organization) -> list[str]:
    """The grant methods that open sensitive operations for this user in this organization: with
    an authenticator, an assertion or one of the backup codes its registration issued."""
    if WebAuthnCredential.objects.filter(user=user).exists():
        return [services.METHOD_WEBAUTHN, services.METHOD_BACKUP_CODE]
    if password_fallback_allowed(organization):
        return [services.METHOD_WEBAUTHN, services.METHOD_PASSWORD]
    return [services.METHOD_WEBAUTHN]


def step_up_state(request) -> dict:
    """What ``GET auth/step-up`` answers: is a grant needed here, is there one, which methods count."""
    ctx = get_auth_context(request)
    organization = ctx.organization if ctx else None
    grant = services.grant_get(user_id=request.user.pk, session_id=ctx.session_id) if ctx else None
    methods = (
        acceptable_methods(user=request.user, organization=organization)
        if organization
        else [services.METHOD_WEBAUTHN, services.METHOD_PASSWORD]
    )
    return {
        "required": organization_requires_step_up(organization),
        "granted": bool(grant and grant.get("method") in methods),
        "grant": grant,
        "methods": methods,
    }


def inline_assertion(request) -> dict | None:
    """A WebAuthn assertion sent inside the request body as ``biometric_verification`` — either
    the standard PublicKeyCredential JSON or the ``BiometricCredential`` of docs/stepup.md (``credential_id,
    challenge_response`` = the signature, ``authenticator_data, client_data_json``) — answering
    this session's pending ``auth/biometric/verify`` challenge."""
    data = getattr(request, "data", None)
    value = data.get("biometric_verification") if isinstance(data, dict) else None
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("response"), dict):
        return value
    if not all(
        isinstance(value.get(k), str)
        for k in ("credential_id", "challenge_response", "authenticator_data", "client_data_json")
    ):
        return None
    return {
        "id": value["credential_id"],
        "rawId": value["credential_id"],
        "type": "public-key",
        "response": {
            "clientDataJSON": value["client_data_json"],
            "authenticatorData": value["authenticator_data"],
            "signature": value["challenge_response"],
        },
    }


def check_step_up(request, *, always: bool = False) -> None:
    """Raise 403 ``AUTH_002`` unless the organization does not ask for step-up, or this session
    holds a fresh grant of an acceptable method. ``always``: a grant is needed whatever the
    organization's setting (regenerating backup codes)."""
    ctx = get_auth_context(request)
    if ctx is None:
        if always:
            raise StepUpRequired("This operation needs a fresh step-up verification.")
        return
    if not always and not organization_requires_step_up(ctx.organization):
        return
    methods = acceptable_methods(user=request.user, organization=ctx.organization)
    grant = services.grant_get(user_id=request.user.pk, session_id=ctx.session_id)
    if grant and grant.get("method") in methods:
        return
    inline = inline_assertion(request)
    if inline is not None:  # seed 002 StoreCredentialRequest.biometric_verification: step up in the same call
        services.authentication_verify(
            user=request.user, session_id=ctx.session_id, organization=ctx.organization, credential=inline
        )
        return
    if grant:
        detail = (
            f"This operation needs a fresh step-up verification by {' or '.join(methods)}; "
            f"this session's grant is by {grant.get('method')}."
        )
    else:
        detail = "This operation needs a fresh step-up verification."
    routes = {
        services.METHOD_WEBAUTHN: "auth/biometric/verify",
        services.METHOD_BACKUP_CODE: "auth/biometric/verify",
        services.METHOD_PASSWORD: "auth/step-up/password",
    }
    verify = list(dict.fromkeys(routes[m] for m in methods))
    raise StepUpRequired(detail, extra={"step_up": {"methods": methods, "verify": verify}})


class RequiresStepUp(permissions.BasePermission):
    """Step-up for the view's ``step_up_actions`` (action names, or HTTP method names for plain
    API views; ``"*"`` = all); without that attribute, for every unsafe method. The view's
    ``step_up_always_actions`` need a grant even where the organization does not ask for step-up."""

    def has_permission(self, request, view):
        action = getattr(view, "action", None) or request.method.lower()
        if action in getattr(view, "step_up_always_actions", ()):
            check_step_up(request, always=True)
            return True
        actions = getattr(view, "step_up_actions", None)
        if actions is None:
            needed = request.method not in permissions.SAFE_METHODS
        else:
            needed = "*" in actions or action in actions
        if needed:
            check_step_up(request)
        return True


def requires_step_up(view_method):
    """Decorator for a view method/``@action``: check step-up before running it."""

    @wraps(view_method)
    def wrapper(self, request, *args, **kwargs):
        check_step_up(request)
        return view_method(self, request, *args, **kwargs)

    return wrapper
