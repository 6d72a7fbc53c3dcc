"""Step-up verification: WebAuthn authenticators (registration and assertion ceremonies with the
``webauthn`` package), password re-checks, and the short-lived grants they earn.

A grant is bound to the user and to the session that earned it (the JWT ``sid``, which survives
refresh rotation; ``key:<id>`` for an API key) and lives ``KAI_STEP_UP_TTL_SECONDS`` in Redis, so
every web process sees it. Ceremony challenges are single use: the first verification that
deletes the stored challenge wins, a replay finds nothing.
"""
from __future__ import annotations

import json
import logging
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import exceptions
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from apps.audit.services import audit_record
from apps.stepup.errors import StepUpFailed
from apps.stepup.models import WebAuthnCredential
from kai_platform.api.errors import Conflict, RateLimited, codes
from kai_platform.tenancy import authcache

logger = logging.getLogger(__name__)

METHOD_WEBAUTHN = "webauthn"
METHOD_PASSWORD = "password"
CHALLENGE_TTL_SECONDS = 300
PASSWORD_FAILURES_ALLOWED = 5
PASSWORD_FAILURE_WINDOW_SECONDS = 900


def _key(kind: str, user_id, session_id: str) -> str:
    return f"stepup:{kind}:{user_id}:{session_id}"


def _store_challenge(kind: str, user_id, session_id: str, challenge: bytes) -> None:
    cache.set(_key(kind, user_id, session_id), bytes_to_base64url(challenge), timeout=CHALLENGE_TTL_SECONDS)


def _take_challenge(kind: str, user_id, session_id: str) -> bytes:
    """The pending challenge of this ceremony, removed so it cannot be answered twice."""
    key = _key(kind, user_id, session_id)
    stored = cache.get(key)
    if stored is None or not cache.delete(key):
        raise StepUpFailed("No pending challenge for this session (expired or already answered); "
                           "ask for new options first.")
    return base64url_to_bytes(stored)


def _audit(organization, actor, action: str, instance=None, before=None, after=None) -> None:
    if organization is not None:  # a user with no organization has nothing to audit into
        audit_record(organization=organization, actor=actor, action=action, instance=instance,
                     before=before, after=after)


def _view(credential: WebAuthnCredential) -> dict:
    return {"id": str(credential.pk), "name": credential.name, "credential_id": credential.credential_id,
            "aaguid": credential.aaguid, "device_type": credential.device_type}


# --- registration -----------------------------------------------------------------------------

def registration_options(*, user, session_id: str) -> dict:
    """``PublicKeyCredentialCreationOptions`` (JSON form, for ``navigator.credentials.create``);
    the user's existing authenticators are excluded so one device is not registered twice."""
    existing = WebAuthnCredential.objects.filter(user=user).only("credential_id", "transports")
    options = generate_registration_options(
        rp_id=settings.KAI_WEBAUTHN_RP_ID,
        rp_name=settings.KAI_WEBAUTHN_RP_NAME,
        user_id=user.pk.bytes,
        user_name=user.email,
        user_display_name=getattr(user, "full_name", "") or user.email,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.DISCOURAGED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=[_descriptor(c) for c in existing],
    )
    _store_challenge("reg", user.pk, session_id, options.challenge)
    return json.loads(options_to_json(options))


def _descriptor(credential: WebAuthnCredential) -> PublicKeyCredentialDescriptor:
    transports = []
    for name in credential.transports or []:
        try:
            transports.append(AuthenticatorTransport(name))
        except ValueError:
            continue
    return PublicKeyCredentialDescriptor(id=base64url_to_bytes(credential.credential_id),
                                         transports=transports or None)


def registration_verify(*, user, session_id: str, organization, credential: dict, name: str = "") -> WebAuthnCredential:
    """Verify the attestation answering this session's pending registration challenge and store
    the authenticator."""
    challenge = _take_challenge("reg", user.pk, session_id)
    try:
        verified = verify_registration_response(
            credential=credential, expected_challenge=challenge, expected_rp_id=settings.KAI_WEBAUTHN_RP_ID,
            expected_origin=list(settings.KAI_WEBAUTHN_ORIGINS),
        )
    except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
        raise StepUpFailed(f"The authenticator's registration could not be verified: {exc}") from exc
    transports = [str(t) for t in ((credential.get("response") or {}).get("transports") or []) if isinstance(t, str)]
    try:
        with transaction.atomic():
            stored = WebAuthnCredential.objects.create(
                user=user, name=(name or "").strip()[:100] or f"authenticator {timezone.now():%Y-%m-%d}",
                credential_id=bytes_to_base64url(verified.credential_id),
                public_key=verified.credential_public_key, sign_count=verified.sign_count,
                aaguid=str(verified.aaguid or ""), transports=transports[:10],
                device_type=str(getattr(verified.credential_device_type, "value", verified.credential_device_type) or ""),
                backed_up=bool(verified.credential_backed_up),
            )
            _audit(organization, user, "stepup.authenticator.create", stored, after=_view(stored))
    except IntegrityError:
        raise Conflict("This authenticator is already registered.",
                       errors=[{"field": "credential", "message": "already registered"}])
    _preferences_mark_biometric(user)
    return stored


def _preferences_mark_biometric(user) -> None:
    """Keep seed 002's ``preferences.biometric_enabled`` in step with having an authenticator."""
    enabled = WebAuthnCredential.objects.filter(user=user).exists()
    User = get_user_model()
    current = User.objects.filter(pk=user.pk).values_list("preferences", flat=True).first() or {}
    if bool(current.get("biometric_enabled")) != enabled:
        User.objects.filter(pk=user.pk).update(preferences={**current, "biometric_enabled": enabled})
        authcache.bump_user(user.pk)  # update() sends no signal: cached credentials must re-read the user


def authenticator_delete(*, credential: WebAuthnCredential, actor, organization) -> None:
    with transaction.atomic():
        _audit(organization, actor, "stepup.authenticator.delete", credential, before=_view(credential))
        credential.delete()
    _preferences_mark_biometric(actor)


# --- assertion → grant ------------------------------------------------------------------------

def authentication_options(*, user, session_id: str) -> dict:
    """``PublicKeyCredentialRequestOptions`` (JSON form, for ``navigator.credentials.get``) over
    the user's authenticators."""
    existing = list(WebAuthnCredential.objects.filter(user=user).only("credential_id", "transports"))
    if not existing:
        raise exceptions.ValidationError({"credential": [
            "You have no registered authenticator: register one with auth/biometric/setup, "
            "or re-check your password at auth/step-up/password."]})
    options = generate_authentication_options(
        rp_id=settings.KAI_WEBAUTHN_RP_ID,
        allow_credentials=[_descriptor(c) for c in existing],
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    _store_challenge("auth", user.pk, session_id, options.challenge)
    return json.loads(options_to_json(options))


def authentication_verify(*, user, session_id: str, organization, credential: dict) -> dict:
    """Verify an assertion answering this session's pending challenge; returns the grant."""
    challenge = _take_challenge("auth", user.pk, session_id)
    raw_id = str(credential.get("rawId") or credential.get("id") or "")
    with transaction.atomic():
        stored = (WebAuthnCredential.objects.select_for_update()
                  .filter(user=user, credential_id=raw_id.rstrip("=")).first())
        if stored is None:
            raise StepUpFailed("This authenticator is not registered to you.")
        try:
            verified = verify_authentication_response(
                credential=credential, expected_challenge=challenge, expected_rp_id=settings.KAI_WEBAUTHN_RP_ID,
                expected_origin=list(settings.KAI_WEBAUTHN_ORIGINS),
                credential_public_key=bytes(stored.public_key), credential_current_sign_count=stored.sign_count,
            )
        except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
            raise StepUpFailed(f"The authenticator's assertion could not be verified: {exc}") from exc
        stored.sign_count = verified.new_sign_count
        stored.last_used_at = timezone.now()
        stored.save(update_fields=["sign_count", "last_used_at"])
        grant = grant_issue(user=user, session_id=session_id, method=METHOD_WEBAUTHN, organization=organization,
                            detail={"authenticator_id": str(stored.pk)})
    return grant


def _failures_key(user_id) -> str:
    return f"stepup:pwfail:{user_id}"


def password_verify(*, user, session_id: str, organization, password: str) -> dict:
    """Re-check the account password; returns the grant. Five wrong answers in 15 minutes lock
    this route for the rest of the window (429)."""
    failures_key = _failures_key(user.pk)
    failures = cache.get(failures_key) or 0
    if failures >= PASSWORD_FAILURES_ALLOWED:
        raise RateLimited("Too many wrong passwords; try again later.", retry_after=PASSWORD_FAILURE_WINDOW_SECONDS)
    if not user.has_usable_password() or not user.check_password(password or ""):
        if cache.add(failures_key, 1, timeout=PASSWORD_FAILURE_WINDOW_SECONDS) is False:
            cache.incr(failures_key)
        _audit(organization, user, "stepup.password.failed", user, after={"session_id": session_id})
        raise StepUpFailed("The password is wrong.", code=codes.INVALID_CREDENTIALS)
    cache.delete(failures_key)
    with transaction.atomic():
        return grant_issue(user=user, session_id=session_id, method=METHOD_PASSWORD, organization=organization)


# --- grants -----------------------------------------------------------------------------------

def grant_issue(*, user, session_id: str, method: str, organization, detail: dict | None = None) -> dict:
    ttl = int(settings.KAI_STEP_UP_TTL_SECONDS)
    now = timezone.now()
    grant = {"method": method, "session_id": session_id, "granted_at": now.isoformat(),
             "expires_at": (now + timedelta(seconds=ttl)).isoformat(), "expires_in": ttl}
    cache.set(_key("grant", user.pk, session_id), grant, timeout=ttl)
    _audit(organization, user, f"stepup.grant.{method}", user, after={"session_id": session_id, **(detail or {})})
    return grant


def grant_get(*, user_id, session_id: str) -> dict | None:
    return cache.get(_key("grant", user_id, session_id))


def grant_revoke(*, user, session_id: str, organization) -> bool:
    removed = bool(cache.delete(_key("grant", user.pk, session_id)))
    if removed:
        _audit(organization, user, "stepup.grant.revoke", user, after={"session_id": session_id})
    return removed
