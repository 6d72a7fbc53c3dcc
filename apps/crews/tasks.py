"""Celery tasks of the run engine. They take ids, are queued on commit, and are idempotent."""
from __future__ import annotations

import logging
import os
import socket

from celery import shared_task

logger = logging.getLogger(__name__)


def _worker_name(task) -> str:
    hostname = getattr(task.request, "hostname", None) or f"worker@{socket.gethostname()}"
    return f"{hostname} (pid {os.getpid()})"


@shared_task(bind=True, name="apps.crews.tasks.run_execution", acks_late=True, reject_on_worker_lost=True,
             ignore_result=True)
def run_execution(self, execution_id: str) -> str:
    """Run one execution (any kind) to its end; a second delivery of the message is a no-op."""
    from apps.crews.runner import run

    return run(execution_id, worker=_worker_name(self))  # its log lines name the organization and the run


@shared_task(name="apps.crews.tasks.reap_stale_executions", ignore_result=True)
def reap_stale_executions() -> dict:
    """Beat, every few seconds: runs whose worker stopped heartbeating end FAILED ("worker lost")
    or go back to the queue per their retry policy; PENDING runs whose message was lost are re-queued."""
    from apps.crews.runner import reap_stale, requeue_forgotten

    counts = reap_stale()
    counts["requeued_forgotten"] = requeue_forgotten()
    if any(counts.values()):
        logger.warning("reaper: %s", counts)
    return counts


@shared_task(name="apps.crews.tasks.noop", acks_late=True, ignore_result=True)
def noop(counter_key: str | None = None) -> None:
    """The bare-Celery baseline of bench B4: nothing but (optionally) counting that it ran."""
    if counter_key:
        from django_redis import get_redis_connection

        get_redis_connection("default").incr(counter_key)
