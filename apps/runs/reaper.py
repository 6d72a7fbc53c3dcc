"""The reaper (beat): runs whose worker stopped heartbeating end or go back to the queue; PENDING
runs whose queue message was lost are queued again."""
from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.runs.models import Execution, ExecutionStatus
from apps.runs.services import execution_enqueue, execution_transition

S = ExecutionStatus


def stale_seconds() -> float:
    return float(getattr(settings, "KAI_RUN_STALE_SECONDS", 60))


def reap_stale(*, now=None, limit: int = 500) -> dict:
    """Runs whose heartbeat is older than ``KAI_RUN_STALE_SECONDS``: FAILED "worker lost", or back to
    PENDING (and queued) while attempts remain; a cancel-requested one ends CANCELLED."""
    from datetime import timedelta

    now = now or timezone.now()
    cutoff = now - timedelta(seconds=stale_seconds())
    stale = list(Execution.objects.filter(status__in=[S.PREPARING, S.RUNNING], heartbeat_at__lt=cutoff)
                 .values("pk", "attempts", "max_attempts", "cancel_requested", "worker", "priority",
                         "heartbeat_at")[:limit])
    counts = {"failed": 0, "requeued": 0, "cancelled": 0}
    for row in stale:
        age = int((now - row["heartbeat_at"]).total_seconds())
        lost = f"worker lost: no heartbeat from {row['worker'] or 'its worker'} for {age} s"
        if row["cancel_requested"]:
            if execution_transition(execution_id=row["pk"], to=S.CANCELLED, reason=f"cancelled ({lost})",
                                    only_from={S.PREPARING, S.RUNNING}):
                counts["cancelled"] += 1
        elif row["attempts"] < row["max_attempts"]:
            with transaction.atomic():
                if execution_transition(execution_id=row["pk"], to=S.PENDING, worker="",
                                        reason=f"{lost}; requeued (attempt {row['attempts'] + 1} of "
                                               f"{row['max_attempts']})"):
                    transaction.on_commit(partial_enqueue(row["pk"], row["priority"]))
                    counts["requeued"] += 1
        elif execution_transition(execution_id=row["pk"], to=S.FAILED, reason=lost, error=lost,
                                  only_from={S.PREPARING, S.RUNNING}):
            counts["failed"] += 1
    return counts


def partial_enqueue(execution_id, priority):
    return lambda: execution_enqueue(execution_id=execution_id, priority=priority)


def requeue_forgotten(*, older_than_seconds: int = 300, limit: int = 200) -> int:
    """PENDING runs whose queue message was lost with a killed worker's prefetch: queue them again
    (claiming is conditional, so a duplicate message is harmless)."""
    from datetime import timedelta

    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    rows = list(Execution.objects.filter(status=S.PENDING, updated_at__lt=cutoff, cancel_requested=False)
                .values_list("pk", "priority")[:limit])
    for pk, priority in rows:
        Execution.objects.filter(pk=pk, status=S.PENDING).update(updated_at=timezone.now())
        execution_enqueue(execution_id=pk, priority=priority)
    return len(rows)
