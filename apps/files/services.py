"""Writes of files: store (quota-checked, in one transaction with its audit row) and delete."""

from __future__ import annotations

import hashlib
import uuid

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Sum

from apps.audit.services import audit_record, snapshot
from apps.events.services import publish
from apps.files.models import StoredFile
from apps.files.uploads import SNIFF_BYTES, max_upload_bytes
from apps.files.validation import sanitize_filename, sniff_content_type
from kai_platform.api.errors import PayloadTooLarge
from kai_platform.tenancy import locks

#: bytes of storage per plan (KAI_STORAGE_QUOTA_MB overrides for every plan; an organization's
#: settings key ``storage_quota_mb`` overrides for that organization)
PLAN_QUOTA_MB = {"free": 1024, "standard": 5 * 1024, "pro": 50 * 1024, "enterprise": 500 * 1024}


def quota_bytes(organization) -> int:
    override = (organization.settings or {}).get("storage_quota_mb")
    if isinstance(override, int) and override > 0:
        return override * 1024 * 1024
    if settings.KAI_STORAGE_QUOTA_MB:
        return settings.KAI_STORAGE_QUOTA_MB * 1024 * 1024
    return PLAN_QUOTA_MB.get(organization.plan, PLAN_QUOTA_MB["standard"]) * 1024 * 1024


def usage_bytes(organization) -> int:
    return StoredFile.objects.for_org(organization).aggregate(total=Sum("size"))["total"] or 0


def _digest_and_head(fileobj) -> tuple[str, bytes]:
    sha = hashlib.sha256()
    head = b""
    fileobj.seek(0)
    for chunk in iter(lambda: fileobj.read(1024 * 1024), b""):
        sha.update(chunk)
        if len(head) < SNIFF_BYTES:
            head += chunk[: SNIFF_BYTES - len(head)]
    fileobj.seek(0)
    return sha.hexdigest(), head


def _check_quota(organization, size: int) -> None:
    """413 (with the usage) when ``size`` more bytes would pass the organization's storage quota."""
    used, quota = usage_bytes(organization), quota_bytes(organization)
    if used + size > quota:
        raise PayloadTooLarge(
            f"Storage quota exceeded: {used} of {quota} bytes used, this file needs {size}.",
            errors=[{"field": "file", "message": "organization storage quota exceeded"}],
            extra={"usage": {"used_bytes": used, "quota_bytes": quota, "requested_bytes": size}},
        )


def file_store(
    *,
    organization,
    user,
    upload,
    name: str | None = None,
    declared_content_type: str = "",
    agent_id=None,
    execution_id=None,
    metadata: dict | None = None,
) -> StoredFile:
    """Store one file (an UploadedFile or any File object) for the organization.

    Refuses a file over the per-file cap or over the organization's quota (413, with usage)."""
    size = upload.size
    if size > max_upload_bytes():
        raise PayloadTooLarge(
            f"The file exceeds the upload limit of {settings.KAI_MAX_UPLOAD_MB} MB.",
            errors=[{"field": "file", "message": f"max {settings.KAI_MAX_UPLOAD_MB} MB per file"}],
        )
    sha256, head = getattr(upload, "kai_sha256", None), getattr(upload, "kai_head", None)
    if sha256 is None:
        sha256, head = _digest_and_head(upload)
    clean_name = sanitize_filename(name or getattr(upload, "name", "") or "file")
    key = f"org/{organization.pk}/{uuid.uuid4().hex}/{clean_name}"
    with transaction.atomic():
        locks.organization_xact_lock(locks.FILES, organization.pk)  # one upload at a time: the quota holds
        _check_quota(organization, size)
        stored_key = default_storage.save(key, upload)  # never overwrites: the key is new
        try:
            stored = StoredFile.objects.create(
                organization=organization,
                created_by=user,
                name=clean_name,
                storage_key=stored_key,
                size=size,
                content_type=sniff_content_type(head or b""),
                declared_content_type=(declared_content_type or "")[:255],
                sha256=sha256,
                agent_id=agent_id,
                execution_id=execution_id,
                metadata=metadata or {},
            )
            audit_record(
                organization=organization, actor=user, action="file.create", instance=stored, after=snapshot(stored)
            )
            publish(
                organization,
                "file.uploaded",
                {"file_id": str(stored.pk), "name": clean_name, "size": size},
                actor=user,
                agent=agent_id,
                execution=execution_id,
                owner=user,
                component="files",
            )
        except BaseException:
            default_storage.delete(stored_key)  # no orphan object when the row is not written
            raise
    return stored


def file_store_bytes(*, organization, user, content: bytes, name: str, **kwargs) -> StoredFile:
    """For uploads that arrive as bytes (the agent socket's base64 ``upload``)."""
    upload = ContentFile(content, name=sanitize_filename(name))
    return file_store(organization=organization, user=user, upload=upload, name=name, **kwargs)


def file_delete(*, stored: StoredFile, actor) -> None:
    with transaction.atomic():
        audit_record(
            organization=stored.organization,
            actor=actor,
            action="file.delete",
            instance=stored,
            before=snapshot(stored),
        )
        key = stored.storage_key
        stored.delete()
        publish(
            stored.organization,
            "file.deleted",
            {"file_id": str(stored.pk), "name": stored.name},
            actor=actor,
            component="files",
        )
        transaction.on_commit(lambda: default_storage.delete(key))
