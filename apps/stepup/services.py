"""Step-up verification: WebAuthn authenticators (registration and assertion ceremonies with the
``webauthn`` package), password re-checks, and the short-lived grants they earn.

A grant is bound to the user and to the session that earned it (the JWT ``sid``, which survives
refresh rotation; ``key:<id>`` for an API key) and lives ``KAI_STEP_UP_TTL_SECONDS`` in Redis, so
every web process sees it. Ceremony challenges are single use: the first verification that
deletes the stored challenge wins, a replay finds nothing.

Backup codes (``BiometricSetupResponse.backup_codes``, docs/stepup.md): registering a user's first
authenticator issues ten single-use recovery codes, shown once. Only a keyed digest of each is
stored — HMAC-SHA256 under a key derived from ``SECRET_KEY`` (``salted_hmac``), over the user id
and the normalized code. A fast keyed hash, not a slow password hash, on purpose: the codes are
50 random bits each from ``secrets`` (not something a person chose), so a slow hash adds nothing
against guessing while a verification would cost ten slow hashes; the key keeps a copy of the
table alone useless for an offline search, and online guessing is capped (five wrong codes per
15 minutes → 429). Spending a code is one conditional UPDATE, so it works exactly once.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Count, Max, Q
from django.utils import timezone
from django.utils.crypto import salted_hmac
from rest_framework import exceptions

from apps.accounts import throttle
from apps.audit.services import audit_record
from apps.stepup.errors import StepUpFailed
from apps.stepup.models import BackupCode, WebAuthnCredential
from kai_platform.api.errors import Conflict, RateLimited, codes
from kai_platform.tenancy import authcache

if TYPE_CHECKING:
    from webauthn.helpers.structs import PublicKeyCredentialDescriptor

logger = logging.getLogger(__name__)

METHOD_WEBAUTHN = "webauthn"
METHOD_PASSWORD = "password"
METHOD_BACKUP_CODE = "backup_code"
CHALLENGE_TTL_SECONDS = 300
BACKUP_CODE_COUNT = 10
#: Crockford's base32 (no i, l, o, u): 10 characters = 50 random bits, shown as ``xxxxx-xxxxx``
BACKUP_CODE_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
BACKUP_CODE_LENGTH = 10
BACKUP_CODE_FAILURES_ALLOWED = 5
BACKUP_CODE_FAILURE_WINDOW_SECONDS = 900


def _key(kind: str, user_id, session_id: str) -> str:
    return f"stepup:{kind}:{user_id}:{session_id}"


def _store_challenge(kind: str, user_id, session_id: str, challenge: bytes) -> None:
    cache.set(_key(kind, user_id, session_id), _base64url(challenge), timeout=CHALLENGE_TTL_SECONDS)


def _take_challenge(kind: str, user_id, session_id: str) -> bytes:
    """The pending challenge of this ceremony, removed so it cannot be answered twice."""
    key = _key(kind, user_id, session_id)
    stored = cache.get(key)
    if stored is None or not cache.delete(key):
        raise StepUpFailed(
            "No pending challenge for this session (expired or already answered); ask for new options first."
        )
    return _base64url_bytes(stored)


def _base64url(raw: bytes) -> str:
    """WebAuthn's base64url: the URL-safe alphabet, no padding."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _base64url_bytes(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _audit(organization, actor, action: str, instance=None, before=None, after=None) -> None:
    if organization is not None:  # a user with no organization has nothing to audit into
        audit_record(
            organization=organization, actor=actor, action=action, instance=instance, before=before, after=after
        )


def _view(credential: WebAuthnCredential) -> dict:
    return {
        "id": str(credential.pk),
        "name": credential.name,
        "credential_id": credential.credential_id,
        "aaguid": credential.aaguid,
        "device_type": credential.device_type,
    }


# --- registration -----------------------------------------------------------------------------


def registration_options(*, user, session_id: str) -> dict:
    """``PublicKeyCredentialCreationOptions`` (JSON form, for ``navigator.credentials.create``);
    the user's existing authenticators are excluded so one device is not registered twice."""
    # deferred: webauthn (~0.3 s of imports: pyasn1, cbor2) loads only where a ceremony runs
    from webauthn import generate_registration_options, options_to_json
    from webauthn.helpers.structs import (
        AuthenticatorSelectionCriteria,
        ResidentKeyRequirement,
        UserVerificationRequirement,
    )

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
    # deferred: webauthn (~0.3 s of imports: pyasn1, cbor2) loads only where a ceremony runs
    from webauthn.helpers.structs import AuthenticatorTransport, PublicKeyCredentialDescriptor

    transports = []
    for name in credential.transports or []:
        try:
            transports.append(AuthenticatorTransport(name))
        except ValueError:
            continue
    return PublicKeyCredentialDescriptor(id=_base64url_bytes(credential.credential_id), transports=transports or None)


def registration_verify(
    *, user, session_id: str, organization, credential: dict, name: str = ""
) -> tuple[WebAuthnCredential, list[str]]:
    """Verify the attestation answering this session's pending registration challenge and store
    the authenticator. Returns it and, when it is the user's first authenticator, the ten new
    backup codes (in clear, the only time they exist; otherwise an empty list)."""
    # deferred: webauthn (~0.3 s of imports: pyasn1, cbor2) loads only where a ceremony runs
    from webauthn import verify_registration_response
    from webauthn.helpers.exceptions import WebAuthnException

    challenge = _take_challenge("reg", user.pk, session_id)
    try:
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=settings.KAI_WEBAUTHN_RP_ID,
            expected_origin=list(settings.KAI_WEBAUTHN_ORIGINS),
        )
    except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
        raise StepUpFailed(f"The authenticator's registration could not be verified: {exc}") from exc
    transports = [str(t) for t in ((credential.get("response") or {}).get("transports") or []) if isinstance(t, str)]
    try:
        with transaction.atomic():
            _lock_user(user)  # one registration of a user at a time: exactly one of them is the first
            first = not WebAuthnCredential.objects.filter(user=user).exists()
            stored = WebAuthnCredential.objects.create(
                user=user,
                name=(name or "").strip()[:100] or f"authenticator {timezone.now():%Y-%m-%d}",
                credential_id=_base64url(verified.credential_id),
                public_key=verified.credential_public_key,
                sign_count=verified.sign_count,
                aaguid=str(verified.aaguid or ""),
                transports=transports[:10],
                device_type=str(
                    getattr(verified.credential_device_type, "value", verified.credential_device_type) or ""
                ),
                backed_up=bool(verified.credential_backed_up),
            )
            codes = _backup_codes_replace(user) if first else []
            _audit(
                organization,
                user,
                "stepup.authenticator.create",
                stored,
                after={**_view(stored), "backup_codes_issued": len(codes)},
            )
    except IntegrityError:
        raise Conflict(
            "This authenticator is already registered.",
            errors=[{"field": "credential", "message": "already registered"}],
        )
    _preferences_mark_biometric(user)
    return stored, codes


def _lock_user(user) -> None:
    """Row lock on the user for the rest of the transaction (serializes changes to their
    authenticators and backup codes)."""
    list(get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True))


def _preferences_mark_biometric(user) -> None:
    """Keep ``preferences.biometric_enabled`` (docs/accounts.md) in step with having an authenticator."""
    enabled = WebAuthnCredential.objects.filter(user=user).exists()
    User = get_user_model()
    current = User.objects.filter(pk=user.pk).values_list("preferences", flat=True).first() or {}
    if bool(current.get("biometric_enabled")) != enabled:
        User.objects.filter(pk=user.pk).update(preferences={**current, "biometric_enabled": enabled})
        authcache.bump_user(user.pk)  # update() sends no signal: cached credentials must re-read the user


def authenticator_delete(*, credential: WebAuthnCredential, actor, organization) -> None:
    """Remove an authenticator; removing the user's last one also removes their backup codes
    (they recover access to authenticators; registering a first one again issues new ones)."""
    with transaction.atomic():
        _lock_user(credential.user)
        last = not WebAuthnCredential.objects.filter(user_id=credential.user_id).exclude(pk=credential.pk).exists()
        revoked = BackupCode.objects.filter(user_id=credential.user_id).delete()[0] if last else 0
        _audit(
            organization,
            actor,
            "stepup.authenticator.delete",
            credential,
            before={**_view(credential), "backup_codes_revoked": revoked},
        )
        credential.delete()
    _preferences_mark_biometric(actor)


# --- backup codes -----------------------------------------------------------------------------

_CONFUSABLE = str.maketrans({"i": "1", "l": "1", "o": "0", "-": None, " ": None, "\t": None})


def backup_code_normalize(code: str) -> str:
    """What a person typed → the canonical code: case, dashes and spaces do not matter, and the
    letters Crockford's alphabet leaves out read as the digits they resemble."""
    return str(code or "").lower().translate(_CONFUSABLE)


def backup_code_digest(user_id, code: str, secret: str | None = None) -> str:
    """The stored form of a code: HMAC-SHA256 keyed from ``secret`` (default ``SECRET_KEY``)."""
    return salted_hmac(
        "kai.stepup.backup_code", f"{user_id}:{backup_code_normalize(code)}", secret=secret, algorithm="sha256"
    ).hexdigest()


def _backup_code_new() -> str:
    raw = "".join(secrets.choice(BACKUP_CODE_ALPHABET) for _ in range(BACKUP_CODE_LENGTH))
    return f"{raw[:5]}-{raw[5:]}"


def _backup_codes_replace(user) -> list[str]:
    """Replace all of the user's codes by ten new ones (inside the caller's transaction)."""
    codes: list[str] = []
    while len(codes) < BACKUP_CODE_COUNT:
        code = _backup_code_new()
        if code not in codes:
            codes.append(code)
    BackupCode.objects.filter(user=user).delete()
    BackupCode.objects.bulk_create([BackupCode(user=user, digest=backup_code_digest(user.pk, c)) for c in codes])
    return codes


def backup_codes_regenerate(*, user, organization) -> list[str]:
    """New backup codes for a user with an authenticator; every earlier code stops working.
    The caller checks the step-up grant first. Returns the codes in clear (shown once)."""
    with transaction.atomic():
        _lock_user(user)
        if not WebAuthnCredential.objects.filter(user=user).exists():
            raise exceptions.ValidationError(
                {
                    "backup_codes": [
                        "Backup codes recover access to your authenticators: register one with auth/biometric/setup first."
                    ]
                }
            )
        old = BackupCode.objects.filter(user=user).aggregate(
            unused=Count("id", filter=Q(used_at__isnull=True)), generated_at=Max("created_at")
        )
        codes = _backup_codes_replace(user)
        _audit(
            organization,
            user,
            "stepup.backup_codes.regenerate",
            user,
            before={"backup_codes_unused": old["unused"], "backup_codes_generated_at": _iso(old["generated_at"])},
            after={"backup_codes_unused": len(codes), "backup_codes_generated_at": _iso(timezone.now())},
        )
    return codes


def _iso(moment) -> str | None:
    return moment.isoformat() if moment is not None else None


def _code_failures_key(user_id) -> str:
    return f"stepup:codefail:{user_id}"


def backup_code_verify(*, user, session_id: str, organization, code: str) -> dict:
    """Spend one of the user's unused backup codes; returns the grant (method ``backup_code``).
    The code is marked used by one conditional UPDATE, so of any number of concurrent uses
    exactly one succeeds. Five wrong or spent codes in 15 minutes lock this for the rest of the
    window (429)."""
    failures_key = _code_failures_key(user.pk)
    if (cache.get(failures_key) or 0) >= BACKUP_CODE_FAILURES_ALLOWED:
        raise RateLimited(
            "Too many wrong backup codes; try again later.", retry_after=BACKUP_CODE_FAILURE_WINDOW_SECONDS
        )
    keys = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]  # codes survive a key rotation
    digests = [backup_code_digest(user.pk, code, secret) for secret in keys]
    with transaction.atomic():
        spent = BackupCode.objects.filter(user=user, digest__in=digests, used_at__isnull=True).update(
            used_at=timezone.now()
        )
        if spent:
            remaining = BackupCode.objects.filter(user=user, used_at__isnull=True).count()
            return grant_issue(
                user=user,
                session_id=session_id,
                method=METHOD_BACKUP_CODE,
                organization=organization,
                detail={"backup_codes_remaining": remaining},
            )
    if cache.add(failures_key, 1, timeout=BACKUP_CODE_FAILURE_WINDOW_SECONDS) is False:
        cache.incr(failures_key)
    _audit(organization, user, "stepup.backup_code.failed", user, after={"session_id": session_id})
    raise StepUpFailed("This backup code is wrong or has already been used.")


# --- assertion → grant ------------------------------------------------------------------------


def authentication_options(*, user, session_id: str) -> dict:
    """``PublicKeyCredentialRequestOptions`` (JSON form, for ``navigator.credentials.get``) over
    the user's authenticators."""
    # deferred: webauthn (~0.3 s of imports: pyasn1, cbor2) loads only where a ceremony runs
    from webauthn import generate_authentication_options, options_to_json
    from webauthn.helpers.structs import UserVerificationRequirement

    existing = list(WebAuthnCredential.objects.filter(user=user).only("credential_id", "transports"))
    if not existing:
        message = (
            "You have no registered authenticator: register one with auth/biometric/setup, "
            "or re-check your password at auth/step-up/password."
        )
        raise Conflict(message, errors=[{"field": "credential", "message": message}])  # the account's state
    options = generate_authentication_options(
        rp_id=settings.KAI_WEBAUTHN_RP_ID,
        allow_credentials=[_descriptor(c) for c in existing],
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    _store_challenge("auth", user.pk, session_id, options.challenge)
    return json.loads(options_to_json(options))


def authentication_verify(*, user, session_id: str, organization, credential: dict) -> dict:
    """Verify an assertion answering this session's pending challenge; returns the grant."""
    # deferred: webauthn (~0.3 s of imports: pyasn1, cbor2) loads only where a ceremony runs
    from webauthn import verify_authentication_response
    from webauthn.helpers.exceptions import WebAuthnException

    challenge = _take_challenge("auth", user.pk, session_id)
    raw_id = str(credential.get("rawId") or credential.get("id") or "")
    with transaction.atomic():
        stored = (
            WebAuthnCredential.objects.select_for_update().filter(user=user, credential_id=raw_id.rstrip("=")).first()
        )
        if stored is None:
            raise StepUpFailed("This authenticator is not registered to you.")
        try:
            verified = verify_authentication_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=settings.KAI_WEBAUTHN_RP_ID,
                expected_origin=list(settings.KAI_WEBAUTHN_ORIGINS),
                credential_public_key=bytes(stored.public_key),
                credential_current_sign_count=stored.sign_count,
            )
        except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
            raise StepUpFailed(f"The authenticator's assertion could not be verified: {exc}") from exc
        stored.sign_count = verified.new_sign_count
        stored.last_used_at = timezone.now()
        stored.save(update_fields=["sign_count", "last_used_at"])
        grant = grant_issue(
            user=user,
            session_id=session_id,
            method=METHOD_WEBAUTHN,
            organization=organization,
            detail={"authenticator_id": str(stored.pk)},
        )
    return grant


def password_verify(*, user, session_id: str, organization, password: str, address: str) -> dict:
    """Re-check the account password; returns the grant. Wrong answers are counted per account
    and per account + address; past the limit every re-check answers 429 for an escalating time
    (apps.accounts.throttle)."""
    account = throttle.normalize(user.email)
    throttle.guard(throttle.STEP_UP, account=account, address=address)
    if not user.has_usable_password() or not user.check_password(password or ""):
        _audit(organization, user, "stepup.password.failed", user, after={"session_id": session_id})
        throttle.failed(throttle.STEP_UP, account=account, address=address, user=user)
        raise StepUpFailed("The password is wrong.", code=codes.INVALID_CREDENTIALS)
    throttle.succeeded(throttle.STEP_UP, account=account, address=address)
    with transaction.atomic():
        return grant_issue(user=user, session_id=session_id, method=METHOD_PASSWORD, organization=organization)


# --- grants -----------------------------------------------------------------------------------


def grant_issue(*, user, session_id: str, method: str, organization, detail: dict | None = None) -> dict:
    ttl = int(settings.KAI_STEP_UP_TTL_SECONDS)
    now = timezone.now()
    grant = {
        "method": method,
        "session_id": session_id,
        "granted_at": now.isoformat(),
        "expires_at": (now + timedelta(seconds=ttl)).isoformat(),
        "expires_in": ttl,
    }
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
