"""Writes of knowledge bases and documents. Ingestion itself is in ``ingest.py`` (a Celery task,
queued on commit by the writes here)."""

from __future__ import annotations

import hashlib
from functools import partial

from django.db import transaction
from django.db.models import F
from rest_framework import exceptions

from apps.agents.selectors import network_allowlist
from apps.audit.services import audit_covered, audit_record, snapshot
from apps.events.services import publish
from apps.files.models import StoredFile
from apps.files.services import file_delete, file_store
from apps.knowledge import embedders, limits
from apps.knowledge.ingest import publish_status
from apps.knowledge.models import Chunk, Document, DocumentStatus, KnowledgeBase, SourceType
from apps.knowledge.tasks import ingest_document
from kai_platform.api.errors import Conflict, PayloadTooLarge
from kai_platform.llm.netguard import BlockedAddress, check_url
from kai_platform.tenancy import locks

KB_FIELDS = ("name", "description", "embedding_model", "chunk_size", "chunk_overlap", "language", "metadata")
#: a change of any of these re-ingests every document of the base
INDEX_FIELDS = ("embedding_model", "chunk_size", "chunk_overlap", "language")
DOC_AUDIT_FIELDS = [
    "id",
    "knowledge_base",
    "name",
    "source_type",
    "source_url",
    "file",
    "content_type",
    "bytes",
    "sha256",
    "metadata",
    "status",
    "version",
]
MAX_TEXT_BYTES = 2 * 1024 * 1024


def _actor(actor):
    return actor if getattr(actor, "is_authenticated", False) else None


def _check_kb(organization, values: dict) -> None:
    size = values.get("chunk_size")
    overlap = values.get("chunk_overlap")
    if size is not None and overlap is not None and overlap >= size:
        raise exceptions.ValidationError({"chunk_overlap": ["Must be smaller than chunk_size."]})
    if "embedding_model" in values:
        try:
            embedders.check_model(organization=organization, name=values["embedding_model"] or "builtin")
        except embedders.EmbeddingUnavailable as exc:
            raise exceptions.ValidationError({"embedding_model": [str(exc)]})


def _unique_name(organization, name: str, exclude=None) -> None:
    clash = KnowledgeBase.objects.for_org(organization).filter(name=name)
    if exclude is not None:
        clash = clash.exclude(pk=exclude.pk)
    if clash.exists():
        raise Conflict(
            f"A knowledge base named {name!r} already exists.", errors=[{"field": "name", "message": "already exists"}]
        )


def knowledge_base_create(*, organization, actor, data: dict) -> KnowledgeBase:
    values = {k: data[k] for k in KB_FIELDS if k in data}
    values.setdefault("embedding_model", "builtin")
    _check_kb(organization, {"chunk_size": 300, "chunk_overlap": 40, **values})
    with transaction.atomic():
        _unique_name(organization, values.get("name", ""))
        kb = KnowledgeBase.objects.create(organization=organization, created_by=_actor(actor), **values)
        audit_record(
            organization=organization, actor=actor, action="knowledge_base.create", instance=kb, after=snapshot(kb)
        )
    return kb


def knowledge_base_update(*, knowledge_base: KnowledgeBase, actor, data: dict) -> KnowledgeBase:
    values = {k: data[k] for k in KB_FIELDS if k in data}
    merged = {"chunk_size": knowledge_base.chunk_size, "chunk_overlap": knowledge_base.chunk_overlap, **values}
    _check_kb(knowledge_base.organization, merged)
    with transaction.atomic():
        kb = KnowledgeBase.objects.select_for_update().get(pk=knowledge_base.pk)
        if "name" in values:
            _unique_name(kb.organization, values["name"], exclude=kb)
        before = snapshot(kb)
        reindex = any(k in values and values[k] != getattr(kb, k) for k in INDEX_FIELDS)
        for key, value in values.items():
            setattr(kb, key, value)
        kb.save()
        audit_record(
            organization=kb.organization,
            actor=actor,
            action="knowledge_base.update",
            instance=kb,
            before=before,
            after=snapshot(kb),
        )
        if reindex:
            for document in Document.objects.for_org(kb.organization).filter(knowledge_base=kb):
                _request_ingest(document, actor=actor)
    return kb


def knowledge_base_delete(*, knowledge_base: KnowledgeBase, actor) -> None:
    """The base, its documents and their chunks (cascade) and its uploaded files, in one transaction."""
    with transaction.atomic():
        audit_record(
            organization=knowledge_base.organization,
            actor=actor,
            action="knowledge_base.delete",
            instance=knowledge_base,
            before=snapshot(knowledge_base),
        )
        file_ids = list(
            Document.objects.for_org(knowledge_base.organization)
            .filter(knowledge_base=knowledge_base, file__isnull=False)
            .values_list("file_id", flat=True)
        )
        knowledge_base.delete()
        with audit_covered():  # the base's row covers its files
            for stored in StoredFile.objects.for_org(knowledge_base.organization).filter(pk__in=file_ids):
                file_delete(stored=stored, actor=actor)


# --- documents ---------------------------------------------------------------------------------


def _enqueue(document_id, version: int) -> None:
    ingest_document.delay(str(document_id), version)


def _request_ingest(document: Document, *, actor) -> None:
    """Inside a transaction: a new version, PENDING, and its task queued on commit."""
    Document.objects.filter(pk=document.pk).update(version=F("version") + 1, status=DocumentStatus.PENDING, error="")
    document.refresh_from_db(fields=["version", "status", "error"])
    publish_status(document, actor=actor)
    transaction.on_commit(partial(_enqueue, document.pk, document.version), robust=True)


def _create(*, knowledge_base, actor, audit: bool = True, **values) -> Document:
    document = Document.objects.create(
        organization_id=knowledge_base.organization_id,
        knowledge_base=knowledge_base,
        created_by=_actor(actor),
        **values,
    )
    if audit:
        audit_record(
            organization=knowledge_base.organization,
            actor=actor,
            action="document.create",
            instance=document,
            after=snapshot(document, DOC_AUDIT_FIELDS),
        )
    publish_status(document, actor=actor)
    transaction.on_commit(partial(_enqueue, document.pk, document.version), robust=True)
    return document


def document_create_text(
    *, knowledge_base: KnowledgeBase, actor, name: str, text: str, metadata: dict | None = None
) -> Document:
    raw = text.encode()
    if len(raw) > MAX_TEXT_BYTES:
        raise PayloadTooLarge(
            f"The text exceeds {MAX_TEXT_BYTES} bytes; upload it as a file.",
            errors=[{"field": "text", "message": f"max {MAX_TEXT_BYTES} bytes"}],
        )
    organization = knowledge_base.organization
    with transaction.atomic():
        locks.organization_xact_lock(limits.LOCK_NAMESPACE, organization.pk)
        limits.check_admission(organization, new_bytes=len(raw))
        return _create(
            knowledge_base=knowledge_base,
            actor=actor,
            name=name or "text",
            source_type=SourceType.TEXT,
            text=text,
            content_type="text/plain",
            bytes=len(raw),
            sha256=hashlib.sha256(raw).hexdigest(),
            metadata=metadata or {},
        )


def document_create_url(
    *, knowledge_base: KnowledgeBase, actor, url: str, name: str = "", metadata: dict | None = None
) -> Document:
    """The URL is checked now (SSRF guard: public addresses or the organization's allow-list) and
    fetched by the ingestion task, through the same guard, on every (re-)ingest."""
    organization = knowledge_base.organization
    try:
        check_url(url, network_allowlist(organization=organization))
    except BlockedAddress as exc:
        raise exceptions.ValidationError({"url": [f"Refused: {exc}."]})
    with transaction.atomic():
        locks.organization_xact_lock(limits.LOCK_NAMESPACE, organization.pk)
        limits.check_admission(organization, new_bytes=0)
        return _create(
            knowledge_base=knowledge_base,
            actor=actor,
            name=name or url[:255],
            source_type=SourceType.URL,
            source_url=url,
            metadata=metadata or {},
        )


def document_create_file(
    *, knowledge_base: KnowledgeBase, actor, upload, name: str = "", metadata: dict | None = None
) -> Document:
    """The upload is kept in the organization's files (apps.files: quota, sniffed type) and read
    from there by the ingestion task."""
    organization = knowledge_base.organization
    with transaction.atomic():
        locks.organization_xact_lock(limits.LOCK_NAMESPACE, organization.pk)
        limits.check_admission(organization, new_bytes=upload.size)
        with audit_covered():  # the document's row covers the stored file
            stored = file_store(
                organization=organization,
                user=_actor(actor),
                upload=upload,
                declared_content_type=getattr(upload, "content_type", "") or "",
                metadata={"knowledge_base_id": str(knowledge_base.pk)},
            )
        declared = (getattr(upload, "content_type", "") or "").split(";")[0]
        content_type = (
            stored.content_type
            if stored.content_type not in ("text/plain", "application/octet-stream")
            else (declared or stored.content_type)
        )
        return _create(
            knowledge_base=knowledge_base,
            actor=actor,
            name=name or stored.name,
            source_type=SourceType.FILE,
            file=stored,
            content_type=content_type,
            bytes=stored.size,
            sha256=stored.sha256,
            metadata=metadata or {},
        )


def document_reingest(*, document: Document, actor) -> Document:
    with transaction.atomic():
        document = Document.objects.select_for_update().get(pk=document.pk)
        before = snapshot(document, DOC_AUDIT_FIELDS)
        _request_ingest(document, actor=actor)
        audit_record(
            organization=document.organization,
            actor=actor,
            action="document.reingest",
            instance=document,
            before=before,
            after=snapshot(document, DOC_AUDIT_FIELDS),
        )
    return document


def document_update(*, document: Document, actor, data: dict) -> Document:
    """Name and metadata (search filters read the document's metadata with its chunks')."""
    with transaction.atomic():
        document = Document.objects.select_for_update().get(pk=document.pk)
        before = snapshot(document, DOC_AUDIT_FIELDS)
        for key in ("name", "metadata"):
            if key in data:
                setattr(document, key, data[key])
        document.save()
        audit_record(
            organization=document.organization,
            actor=actor,
            action="document.update",
            instance=document,
            before=before,
            after=snapshot(document, DOC_AUDIT_FIELDS),
        )
    return document


def document_delete(*, document: Document, actor) -> None:
    """The document and its chunks (cascade) in one transaction; the stored file after commit."""
    with transaction.atomic():
        audit_record(
            organization=document.organization,
            actor=actor,
            action="document.delete",
            instance=document,
            before=snapshot(document, DOC_AUDIT_FIELDS),
        )
        Chunk.objects.filter(document=document).delete()
        stored = document.file
        document.delete()
        publish(
            document.organization_id,
            "knowledge.document.deleted",
            {
                "document_id": str(document.pk),
                "knowledge_base_id": str(document.knowledge_base_id),
                "name": document.name,
            },
            actor=_actor(actor),
            component="knowledge",
        )
        if stored is not None:
            with audit_covered():  # the document's row covers its file
                file_delete(stored=stored, actor=actor)
