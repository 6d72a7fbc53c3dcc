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


def lost_after_seconds() -> float:
    """A run whose worker's liveness key is gone is lost once its own heartbeat is this old."""
    return max(3 * float(getattr(settings, "KAI_RUN_HEARTBEAT_SECONDS", 2)), 5.0)


def live_workers() -> set[str] | None:
    """Node names (``runs-a@host``) of the workers whose liveness key (``kai_platform.celery``) is
    alive; None when Redis cannot say (then only the heartbeat age counts)."""
    from django_redis import get_redis_connection

    marker = f"{settings.KAI_REDIS_PREFIX}:workers:"
    try:
        keys = get_redis_connection("default").scan_iter(f"{marker}*", count=1000)
        return {(k.decode() if isinstance(k, bytes) else k)[len(marker):].rsplit(":", 1)[0] for k in keys}
    except Exception:
        return None


def worker_node(worker: str) -> str:
    """``runs-a@host (pid 12)`` → ``runs-a@host``."""
    return worker.rsplit(" (pid ", 1)[0].strip()


def reap_stale(*, now=None, limit: int = 500) -> dict:
    """Runs whose worker is lost: their heartbeat is older than ``KAI_RUN_STALE_SECONDS``, or older
    than a few heartbeats while their worker's liveness key is gone (a killed worker is noticed
    within seconds of its key expiring). They end FAILED "worker lost", or go back to PENDING
    (and the queue) while attempts remain — a checkpointed run then resumes from its step log; a
    cancel-requested one ends CANCELLED."""
    from datetime import timedelta

    now = now or timezone.now()
    cutoff = now - timedelta(seconds=stale_seconds())
    early = now - timedelta(seconds=min(lost_after_seconds(), stale_seconds()))
    rows = list(Execution.objects.filter(status__in=[S.PREPARING, S.RUNNING], heartbeat_at__lt=early)
                .values("pk", "attempts", "max_attempts", "cancel_requested", "worker", "priority",
                        "heartbeat_at")[:limit])
    live = live_workers() if any(r["heartbeat_at"] >= cutoff for r in rows) else set()
    stale = [r for r in rows if r["heartbeat_at"] < cutoff
             or (live is not None and r["worker"] and worker_node(r["worker"]) not in live)]
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
        if execution_transition(execution_id=row["pk"], to=S.CANCELLED, reason=f"cancelled ({lost})",
                                only_from={S.PREPARING, S.RUNNING}):
            return "cancelled"
    elif row["attempts"] < row["max_attempts"]:
        with transaction.atomic():
            if execution_transition(execution_id=row["pk"], to=S.PENDING, worker="",
                                    reason=f"{lost}; requeued (attempt {row['attempts'] + 1} of "
                                           f"{row['max_attempts']})", only_from={S.PREPARING, S.RUNNING}):
                transaction.on_commit(partial_enqueue(row["pk"], row["priority"]))
                return "requeued"
    elif execution_transition(execution_id=row["pk"], to=S.FAILED, reason=lost, error=lost,
                              only_from={S.PREPARING, S.RUNNING}):
        return "failed"
    return None


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
