"""Ingestion of one document version: load → extract → chunk → embed (in batches, with progress
events) → index. The chunk writes, the READY status and its event are one transaction, so a
search sees the old index or the new one, never half of one; a failure leaves the document
FAILED with its error and no chunks. Idempotent: a task for an older version, or for a version
already READY, does nothing."""

from __future__ import annotations

import logging

from django.db import connection, transaction
from django.utils import timezone

from apps.agents.selectors import network_allowlist
from apps.events.services import publish
from apps.files.selectors import open_file
from apps.knowledge import embedders, limits
from apps.knowledge.chunking import chunk_sections
from apps.knowledge.extract import Extracted, ExtractionError, extract
from apps.knowledge.models import Chunk, Document, DocumentStatus, SourceType
from kai_platform.llm.netguard import BlockedAddress, check_url, guarded_http_client

logger = logging.getLogger(__name__)
S = DocumentStatus
MAX_FETCH_BYTES = 20 * 1024 * 1024
FETCH_TIMEOUT = 20.0


class IngestError(Exception):
    """A reason the document cannot be indexed, for its ``error``."""


def _fetch(document: Document) -> tuple[bytes, str]:
    """GET the document's URL through the SSRF guard (checked again on every redirect hop)."""
    # deferred: heavy — the HTTP client stack, loaded on first use to keep process start fast
    import httpx2

    allowlist = network_allowlist(organization=document.organization)
    url = document.source_url
    try:
        check_url(url, allowlist)
        with guarded_http_client(allowlist, timeout=FETCH_TIMEOUT) as client:
            with client.stream("GET", url) as response:
                if response.status_code >= 400:
                    raise IngestError(f"fetching {url} answered HTTP {response.status_code}")
                body = bytearray()
                for piece in response.iter_bytes():
                    body += piece
                    if len(body) > MAX_FETCH_BYTES:
                        raise IngestError(f"{url} is larger than {MAX_FETCH_BYTES} bytes")
                return bytes(body), response.headers.get("content-type", "")
    except BlockedAddress as exc:
        raise IngestError(f"refused: {exc}") from exc
    except httpx2.HTTPError as exc:
        for inner in (exc.__cause__, exc.__context__):
            if isinstance(inner, BlockedAddress):
                raise IngestError(f"refused: {inner}") from exc
        raise IngestError(f"fetching {url} failed: {type(exc).__name__}: {exc}") from exc


def load(document: Document) -> Extracted:
    """The document's text, from wherever it lives."""
    if document.source_type == SourceType.TEXT:
        return extract(document.text.encode(), name=document.name or "text.txt", content_type="text/plain")
    if document.source_type == SourceType.URL:
        data, content_type = _fetch(document)
        document.bytes = len(data)
        name = document.source_url.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
        return extract(data, name=name if "." in name else "", content_type=content_type or "text/html")
    if document.file is None:
        raise IngestError("the document's file no longer exists")

    with open_file(stored=document.file) as handle:
        data = handle.read()
    return extract(data, name=document.name, content_type=document.content_type)


def _claim(document_id, version: int) -> Document | None:
    with transaction.atomic():
        document = (
            Document.objects.select_for_update(of=("self",))
            .select_related("knowledge_base", "organization", "file")
            .filter(pk=document_id)
            .first()
        )
        if document is None or document.version != version or document.status == S.READY:
            return None
        document.status, document.error = S.PROCESSING, ""
        document.save(update_fields=["status", "error", "updated_at"])
        publish_status(document)
    return document


def publish_status(document: Document, *, actor=None) -> None:
    """``knowledge.document.status``: every status change of a document."""
    publish(
        document.organization_id,
        "knowledge.document.status",
        {
            "document_id": str(document.pk),
            "knowledge_base_id": str(document.knowledge_base_id),
            "name": document.name,
            "status": document.status,
            "error": document.error or None,
            "chunk_count": document.chunk_count,
        },
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        severity="warning" if document.status == S.FAILED else "info",
        component="knowledge",
    )


def _progress(document: Document, done: int, total: int) -> None:
    publish(
        document.organization_id,
        "knowledge.document.progress",
        {
            "document_id": str(document.pk),
            "knowledge_base_id": str(document.knowledge_base_id),
            "done": done,
            "total": total,
        },
        component="knowledge",
    )


def document_ingest(*, document_id, version: int) -> str:
    """Index one version of a document. Returns what happened (for logs and tests)."""
    document = _claim(document_id, version)
    if document is None:
        return "skipped"
    kb = document.knowledge_base
    try:
        extracted = load(document)
        pieces = [
            p
            for p in chunk_sections(extracted.sections, size=kb.chunk_size, overlap=kb.chunk_overlap)
            if p.text.strip()
        ]
        if not pieces:
            raise IngestError("the document has no text")
        limits.check_chunks(
            document.organization, document_id=document.pk, new_chunks=len(pieces), new_bytes=document.bytes
        )
        embed = embedders.embedder_for(kb)
        _progress(document, 0, len(pieces))
        if not connection.in_atomic_block:
            connection.close()  # no connection held while a provider embeds
        vectors = embedders.embed_batched(
            embed, [p.text for p in pieces], on_batch=lambda done, total: _progress(document, done, total)
        )
    except (IngestError, ExtractionError, limits.LimitExceeded, embedders.EmbeddingUnavailable) as exc:
        return _fail(document, version, str(exc))
    except Exception as exc:
        logger.exception("ingestion of document %s failed", document.pk)
        return _fail(document, version, f"internal error: {type(exc).__name__}: {exc}")
    return _index(document, version, extracted, pieces, vectors)


def _index(document: Document, version: int, extracted: Extracted, pieces, vectors) -> str:
    with transaction.atomic():
        current = Document.objects.select_for_update().filter(pk=document.pk).first()
        if current is None or current.version != version:
            return "stale"  # deleted or re-requested meanwhile: the newer task indexes it
        Chunk.objects.filter(document_id=document.pk).delete()
        Chunk.objects.bulk_create(
            [
                Chunk(
                    organization_id=document.organization_id,
                    knowledge_base_id=document.knowledge_base_id,
                    document_id=document.pk,
                    position=i,
                    text=p.text,
                    token_count=p.tokens,
                    metadata=p.metadata,
                    embedding=v,
                )
                for i, (p, v) in enumerate(zip(pieces, vectors))
            ],
            batch_size=500,
        )
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE knowledge_chunk SET search_vector = to_tsvector(%s::regconfig, text) WHERE document_id = %s",
                [document.knowledge_base.language, document.pk],
            )
        current.status, current.error = S.READY, ""
        current.chunk_count, current.token_count = len(pieces), sum(p.tokens for p in pieces)
        current.page_count, current.bytes = extracted.pages, document.bytes
        current.ingested_at = timezone.now()
        current.save(
            update_fields=[
                "status",
                "error",
                "chunk_count",
                "token_count",
                "page_count",
                "bytes",
                "ingested_at",
                "updated_at",
            ]
        )
        publish_status(current)
    return "ready"


def _fail(document: Document, version: int, error: str) -> str:
    with transaction.atomic():
        current = Document.objects.select_for_update().filter(pk=document.pk).first()
        if current is None or current.version != version:
            return "stale"
        Chunk.objects.filter(document_id=document.pk).delete()
        current.status, current.error, current.chunk_count, current.token_count = S.FAILED, error[:2000], 0, 0
        current.save(update_fields=["status", "error", "chunk_count", "token_count", "updated_at"])
        publish_status(current)
    return "failed"
