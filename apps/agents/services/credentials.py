"""Credentials: sealed secrets, their use and reveal, verification, backup/restore and key rotation."""

from __future__ import annotations

import base64
import hmac
import json
import logging
import os

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from rest_framework import exceptions

from apps.agents import crypto
from apps.agents.models import Credential
from apps.audit.services import audit_record, snapshot
from apps.events.services import publish
from kai_platform.api.errors import Conflict

logger = logging.getLogger(__name__)


# --- credentials -------------------------------------------------------------------------------


def _sealed(value: str, additional_fields: dict | None) -> tuple[str, str]:
    payload = json.dumps({"value": value, "additional_fields": additional_fields or {}})
    return crypto.encrypt(payload)


def credential_secret(*, credential: Credential) -> dict:
    """The clear secret ``{"value", "additional_fields"}``: for the call that needs it only."""
    return json.loads(crypto.decrypt(credential.encrypted_value))


def _credential_audit_view(credential: Credential) -> dict:
    return snapshot(
        credential,
        [
            "id",
            "name",
            "service_name",
            "credential_type",
            "encryption_key_id",
            "masked",
            "description",
            "expires_at",
            "auto_rotate",
        ],
    )


def credential_create(
    *,
    organization,
    actor,
    name: str,
    service_name: str,
    value: str,
    credential_type: str = "api_key",
    additional_fields: dict | None = None,
    description: str = "",
    expires_at=None,
    auto_rotate: bool = False,
) -> Credential:
    token, key_id = _sealed(value, additional_fields)
    try:
        with transaction.atomic():
            credential = Credential.objects.create(
                organization=organization,
                created_by=actor if getattr(actor, "pk", None) else None,
                name=name,
                service_name=service_name,
                credential_type=credential_type,
                encrypted_value=token,
                encryption_key_id=key_id,
                masked=crypto.mask(value),
                description=description or "",
                expires_at=expires_at,
                auto_rotate=auto_rotate,
            )
            audit_record(
                organization=organization,
                actor=actor,
                action="credential.create",
                instance=credential,
                after=_credential_audit_view(credential),
            )
            publish(
                organization,
                "credential.created",
                {"credential_id": str(credential.pk), "name": name, "service_name": service_name},
                actor=actor,
                owner=credential.created_by,
                component="secrets",
            )
    except IntegrityError:
        raise Conflict(
            f"A credential named {name!r} already exists.", errors=[{"field": "name", "message": "already exists"}]
        )
    return credential


def credential_update(*, credential: Credential, actor, changes: dict) -> Credential:
    """``changes`` may hold ``value``/``additional_fields`` (re-encrypted) and metadata fields."""
    try:
        with transaction.atomic():
            credential = Credential.objects.select_for_update().get(pk=credential.pk)
            before = _credential_audit_view(credential)
            if "value" in changes or "additional_fields" in changes:
                current = credential_secret(credential=credential)
                value = changes.get("value", current["value"])
                extra = changes.get("additional_fields", current.get("additional_fields"))
                credential.encrypted_value, credential.encryption_key_id = _sealed(value, extra)
                credential.masked = crypto.mask(value)
            for key in ("name", "service_name", "credential_type", "description", "expires_at", "auto_rotate"):
                if key in changes:
                    setattr(credential, key, changes[key])
            credential.save()
            audit_record(
                organization=credential.organization,
                actor=actor,
                action="credential.update",
                instance=credential,
                before=before,
                after=_credential_audit_view(credential),
            )
    except IntegrityError:
        raise Conflict(
            "A credential with this name already exists.", errors=[{"field": "name", "message": "already exists"}]
        )
    return credential


def credential_delete(*, credential: Credential, actor) -> None:
    with transaction.atomic():
        audit_record(
            organization=credential.organization,
            actor=actor,
            action="credential.delete",
            instance=credential,
            before=_credential_audit_view(credential),
        )
        credential.delete()


def credential_use(*, credential: Credential) -> dict:
    """Decrypt for a call and count the use."""
    secret = credential_secret(credential=credential)
    Credential.objects.filter(pk=credential.pk).update(usage_count=F("usage_count") + 1, last_used=timezone.now())
    return secret


def credential_reveal(*, credential: Credential, actor) -> dict:
    """The clear value for an owner/admin, audited (the audit row holds no value)."""
    secret = credential_secret(credential=credential)
    with transaction.atomic():
        audit_record(
            organization=credential.organization,
            actor=actor,
            action="credential.reveal",
            instance=credential,
            after={"name": credential.name},
        )
    return secret


def credential_verify(*, credential: Credential, value: str | None) -> dict:
    """Can the platform read this credential (current keys), is it unexpired, and — if a value
    is given — is it the stored one (constant-time)."""
    result = {
        "credential_id": credential.pk,
        "decryptable": True,
        "expired": False,
        "matches": None,
        "encryption_key_id": credential.encryption_key_id,
        "current_key": credential.encryption_key_id == crypto.primary_key_id(),
    }
    try:
        secret = credential_secret(credential=credential)
    except crypto.SecretUnreadable:
        result["decryptable"] = False
        secret = None
    if credential.expires_at and credential.expires_at <= timezone.now():
        result["expired"] = True
    if value is not None and secret is not None:
        result["matches"] = hmac.compare_digest(value.encode(), str(secret["value"]).encode())
    result["valid"] = result["decryptable"] and not result["expired"] and result["matches"] is not False
    return result


def _backup_fernet(passphrase: str, salt: bytes, n: int):
    key = Scrypt(salt=salt, length=32, n=n, r=8, p=1).derive(passphrase.encode())
    return Fernet(base64.urlsafe_b64encode(key))


BACKUP_SCRYPT_N = 2**15


def credentials_backup(*, organization, actor, passphrase: str) -> dict:
    """Every credential of the organization, encrypted under a key derived from ``passphrase``
    (scrypt): a portable backup that no platform key can open."""
    rows = []
    for credential in Credential.objects.for_org(organization).order_by("name"):
        secret = credential_secret(credential=credential)
        rows.append(
            {
                "name": credential.name,
                "service_name": credential.service_name,
                "credential_type": credential.credential_type,
                "value": secret["value"],
                "additional_fields": secret.get("additional_fields") or {},
                "description": credential.description,
                "expires_at": credential.expires_at.isoformat() if credential.expires_at else None,
                "auto_rotate": credential.auto_rotate,
            }
        )
    salt = os.urandom(16)
    token = _backup_fernet(passphrase, salt, BACKUP_SCRYPT_N).encrypt(json.dumps({"credentials": rows}).encode())
    with transaction.atomic():
        audit_record(
            organization=organization,
            actor=actor,
            action="credential.backup",
            model="agents.Credential",
            object_id="*",
            after={"count": len(rows)},
        )
    return {
        "backup": token.decode(),
        "count": len(rows),
        "created_at": timezone.now(),
        "kdf": {"name": "scrypt", "n": BACKUP_SCRYPT_N, "r": 8, "p": 1, "salt": base64.b64encode(salt).decode()},
        "cipher": "fernet",
    }


def credentials_restore(
    *, organization, actor, backup: str, kdf: dict, passphrase: str, overwrite: bool = False
) -> dict:
    try:
        salt = base64.b64decode(kdf["salt"])
        data = json.loads(_backup_fernet(passphrase, salt, int(kdf.get("n", BACKUP_SCRYPT_N))).decrypt(backup.encode()))
    except (InvalidToken, KeyError, ValueError, TypeError):
        raise exceptions.ValidationError({"passphrase": ["The backup does not open with this passphrase."]})
    created, updated, skipped = 0, 0, 0
    with transaction.atomic():
        for row in data.get("credentials", []):
            existing = Credential.objects.for_org(organization).filter(name=row["name"]).first()
            fields = {
                "service_name": row["service_name"],
                "credential_type": row["credential_type"],
                "description": row.get("description") or "",
                "expires_at": row.get("expires_at"),
                "auto_rotate": bool(row.get("auto_rotate")),
            }
            if existing is None:
                credential_create(
                    organization=organization,
                    actor=actor,
                    name=row["name"],
                    value=row["value"],
                    additional_fields=row.get("additional_fields"),
                    **fields,
                )
                created += 1
            elif overwrite:
                credential_update(
                    credential=existing,
                    actor=actor,
                    changes={"value": row["value"], "additional_fields": row.get("additional_fields"), **fields},
                )
                updated += 1
            else:
                skipped += 1
    return {"created": created, "updated": updated, "skipped": skipped}


def credentials_rotate_all(*, batch_size: int = 500, stdout=None) -> dict:
    """Platform-wide: re-encrypt every credential under the newest key (``rotate_secrets``)."""
    primary = crypto.primary_key_id()
    rotated = unreadable = 0
    last_pk = None
    while True:
        queryset = Credential.objects.order_by("pk")
        if last_pk is not None:
            queryset = queryset.filter(pk__gt=last_pk)
        page = list(queryset.only("pk", "organization_id", "encrypted_value", "encryption_key_id")[:batch_size])
        if not page:
            break
        last_pk = page[-1].pk
        with transaction.atomic():
            for credential in page:
                try:
                    token, key_id = crypto.rotate(credential.encrypted_value)
                except crypto.SecretUnreadable:
                    unreadable += 1
                    logger.error("credential %s does not decrypt under any configured key", credential.pk)
                    continue
                Credential.objects.filter(pk=credential.pk).update(encrypted_value=token, encryption_key_id=key_id)
                rotated += 1
    return {"rotated": rotated, "unreadable": unreadable, "key_id": primary}


def credential_rotate(*, credential: Credential, actor) -> Credential:
    """Re-encrypt one credential under the newest key (the operator console's "rotate" action).
    Raises ``crypto.SecretUnreadable`` when no configured key opens it."""
    with transaction.atomic():
        credential = Credential.objects.select_for_update().get(pk=credential.pk)
        before = _credential_audit_view(credential)
        credential.encrypted_value, credential.encryption_key_id = crypto.rotate(credential.encrypted_value)
        credential.save(update_fields=["encrypted_value", "encryption_key_id", "updated_at"])
        audit_record(
            organization=credential.organization,
            actor=actor,
            action="credential.rotate",
            instance=credential,
            before=before,
            after=_credential_audit_view(credential),
        )
    return credential
