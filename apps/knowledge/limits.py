"""Per-plan limits of knowledge: documents, chunks and bytes an organization may keep.

An organization's ``settings.knowledge_limits`` (``{"documents", "chunks", "bytes"}``) overrides
its plan's figure for each key it names."""

from __future__ import annotations

from django.db.models import Count, Sum

from apps.knowledge.models import Document
from kai_platform.api.errors import PayloadTooLarge, RateLimited

MB = 1024 * 1024
PLAN_LIMITS = {
    "free": {"documents": 100, "chunks": 20_000, "bytes": 100 * MB},
    "standard": {"documents": 1_000, "chunks": 200_000, "bytes": 1024 * MB},
    "pro": {"documents": 10_000, "chunks": 2_000_000, "bytes": 10 * 1024 * MB},
    "enterprise": {"documents": 100_000, "chunks": 20_000_000, "bytes": 100 * 1024 * MB},
}
#: a count limit is not a window: Retry-After says "after you delete something", at the earliest
RETRY_AFTER = 60
#: advisory lock namespace: one document admission at a time per organization (the limits hold)
LOCK_NAMESPACE = 0x6B4B


def limits_of(organization) -> dict:
    limits = dict(PLAN_LIMITS.get(organization.plan, PLAN_LIMITS["standard"]))
    override = (organization.settings or {}).get("knowledge_limits") or {}
    for key in limits:
        value = override.get(key) if isinstance(override, dict) else None
        if isinstance(value, int) and value >= 0:
            limits[key] = value
    return limits


def usage_of(organization, *, exclude_document=None) -> dict:
    documents = Document.objects.for_org(organization)
    if exclude_document is not None:
        documents = documents.exclude(pk=exclude_document)
    totals = documents.aggregate(documents=Count("id"), chunks=Sum("chunk_count"), bytes=Sum("bytes"))
    return {key: int(totals[key] or 0) for key in ("documents", "chunks", "bytes")}


def _extra(usage: dict, limits: dict) -> dict:
    return {"usage": usage, "limits": limits}


def check_admission(organization, *, new_bytes: int) -> None:
    """429 at the document or chunk limit, 413 when ``new_bytes`` would pass the byte limit."""
    limits, usage = limits_of(organization), usage_of(organization)
    if usage["documents"] >= limits["documents"]:
        raise RateLimited(
            f"Knowledge document limit reached: {usage['documents']} of {limits['documents']}; "
            "delete documents or change plan.",
            retry_after=RETRY_AFTER,
            errors=[{"field": "documents", "message": "document limit reached"}],
            extra=_extra(usage, limits),
        )
    if usage["chunks"] >= limits["chunks"]:
        raise RateLimited(
            f"Knowledge chunk limit reached: {usage['chunks']} of {limits['chunks']}; delete documents or change plan.",
            retry_after=RETRY_AFTER,
            errors=[{"field": "chunks", "message": "chunk limit reached"}],
            extra=_extra(usage, limits),
        )
    if usage["bytes"] + new_bytes > limits["bytes"]:
        raise PayloadTooLarge(
            f"Knowledge byte limit exceeded: {usage['bytes']} of {limits['bytes']} bytes used, "
            f"this document needs {new_bytes}.",
            errors=[{"field": "file", "message": "knowledge byte limit exceeded"}],
            extra=_extra(usage, limits),
        )


class LimitExceeded(Exception):
    """Found while ingesting (the document fails with this message)."""


def check_chunks(organization, *, document_id, new_chunks: int, new_bytes: int) -> None:
    limits, usage = limits_of(organization), usage_of(organization, exclude_document=document_id)
    if usage["chunks"] + new_chunks > limits["chunks"]:
        raise LimitExceeded(
            f"the document makes {new_chunks} chunks and the organization keeps {usage['chunks']} "
            f"of its {limits['chunks']}"
        )
    if usage["bytes"] + new_bytes > limits["bytes"]:
        raise LimitExceeded(
            f"the document has {new_bytes} bytes and the organization keeps {usage['bytes']} of its {limits['bytes']}"
        )
