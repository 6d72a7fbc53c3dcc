"""Celery tasks of the knowledge app (ids in, idempotent)."""

from __future__ import annotations

from celery import shared_task

from apps.knowledge.ingest import document_ingest
from apps.runs.models import Execution


@shared_task(
    name="apps.knowledge.tasks.ingest_document", acks_late=True, reject_on_worker_lost=True, ignore_result=True
)
def ingest_document(document_id: str, version: int) -> str:
    return document_ingest(document_id=document_id, version=int(version))


@shared_task(name="apps.knowledge.tasks.apply_extraction", acks_late=True, ignore_result=True)
def apply_extraction(execution_id: str) -> None:
    """Write a completed, unreviewed extraction's proposal (idempotent: an applied one is left as it is)."""
    # deferred: cycle — apps.knowledge.extraction imports this module at load
    from apps.knowledge.extraction import MARK, extraction_apply_run

    run = Execution.objects.filter(pk=execution_id).first()
    if run is None:
        return
    mark = (run.definition or {}).get(MARK)
    if not mark or mark.get("applied") or mark.get("review"):  # a reviewed one waits for its apply route
        return
    extraction_apply_run(run=run, actor=run.created_by)
