"""The reaper (beat): runs whose worker is lost (stopped heartbeating, or its liveness key
expired) end or go back to the queue; PENDING runs whose queue message was lost are queued again."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_redis import get_redis_connection

from apps.runs.inflight import alive_key, alive_seconds
from apps.runs.models import Execution, ExecutionStatus
from apps.runs.services import execution_enqueue, execution_transition

S = ExecutionStatus


def stale_seconds() -> float:
    return float(getattr(settings, "KAI_RUN_STALE_SECONDS", 60))


def alive_workers(workers: set[str]) -> set[str] | None:
    """Which of ``workers`` (``Execution.worker`` names) still hold a liveness key (set by their
    process's heartbeat, ``apps.runs.inflight``); None when Redis cannot say."""
    names = sorted(workers)
    if not names:
        return set()
    try:
        values = get_redis_connection("default").mget([alive_key(w) for w in names])
    except Exception:
        return None
    return {name for name, value in zip(names, values) if value is not None}


def reap_stale(*, now=None, limit: int = 500) -> dict:
    """Runs whose worker is lost: their heartbeat is older than ``KAI_RUN_STALE_SECONDS``, or as
    old as the liveness key's lifetime while their worker's key is gone (a killed worker is
    noticed as soon as its key expires; a live one refreshes both). They end FAILED "worker lost",
    or go back to PENDING (and the queue) while attempts remain — a checkpointed run then resumes
    from its step log; a cancel-requested one ends CANCELLED."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=stale_seconds())
    early = now - timedelta(seconds=min(alive_seconds(), stale_seconds()))
    rows = list(
        Execution.objects.filter(status__in=[S.PREPARING, S.RUNNING], heartbeat_at__lt=early).values(
            "pk", "attempts", "max_attempts", "cancel_requested", "worker", "priority", "heartbeat_at"
        )[:limit]
    )
    alive = alive_workers({r["worker"] for r in rows if r["heartbeat_at"] >= cutoff and r["worker"]})
    stale = [
        r
        for r in rows
        if r["heartbeat_at"] < cutoff or (alive is not None and r["worker"] and r["worker"] not in alive)
    ]
    counts = {"failed": 0, "requeued": 0, "cancelled": 0}
    for row in stale:
        outcome = _reap(row, now)
        if outcome:
            counts[outcome] += 1
    return counts


def _reap(row: dict, now) -> str | None:
    age = int((now - row["heartbeat_at"]).total_seconds())
    lost = f"worker lost: no heartbeat from {row['worker'] or 'its worker'} for {age} s"
    if row["cancel_requested"]:
        if execution_transition(
            execution_id=row["pk"], to=S.CANCELLED, reason=f"cancelled ({lost})", only_from={S.PREPARING, S.RUNNING}
        ):
            return "cancelled"
    elif row["attempts"] < row["max_attempts"]:
        with transaction.atomic():
            if execution_transition(
                execution_id=row["pk"],
                to=S.PENDING,
                worker="",
                reason=f"{lost}; requeued (attempt {row['attempts'] + 1} of {row['max_attempts']})",
                only_from={S.PREPARING, S.RUNNING},
            ):
                transaction.on_commit(partial_enqueue(row["pk"], row["priority"]))
                return "requeued"
    elif execution_transition(
        execution_id=row["pk"], to=S.FAILED, reason=lost, error=lost, only_from={S.PREPARING, S.RUNNING}
    ):
        return "failed"
    return None


def partial_enqueue(execution_id, priority):
    return lambda: execution_enqueue(execution_id=execution_id, priority=priority)


def requeue_forgotten(*, older_than_seconds: int = 300, limit: int = 200) -> int:
    """PENDING runs whose queue message was lost with a killed worker's prefetch: queue them again
    (claiming is conditional, so a duplicate message is harmless)."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    rows = list(
        Execution.objects.filter(status=S.PENDING, updated_at__lt=cutoff, cancel_requested=False).values_list(
            "pk", "priority"
        )[:limit]
    )
    for pk, priority in rows:
        Execution.objects.filter(pk=pk, status=S.PENDING).update(updated_at=timezone.now())
        execution_enqueue(execution_id=pk, priority=priority)
    return len(rows)
