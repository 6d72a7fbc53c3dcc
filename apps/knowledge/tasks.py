"""Celery tasks of the knowledge app (ids in, idempotent)."""
from __future__ import annotations

from celery import shared_task


@shared_task(name="apps.knowledge.tasks.ingest_document", acks_late=True, reject_on_worker_lost=True,
             ignore_result=True)
def ingest_document(document_id: str, version: int) -> str:
    from apps.knowledge.ingest import document_ingest

    return document_ingest(document_id=document_id, version=int(version))
