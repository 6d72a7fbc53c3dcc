"""Celery tasks of the run engine. They take ids, are queued on commit, and are idempotent.

The names are ``runs.*``; the names these tasks had under ``apps.crews`` stay registered as
aliases, so messages queued (or beat entries written) before an upgrade still run.
"""

from __future__ import annotations

import logging
import os
import socket

from celery import shared_task
from django_redis import get_redis_connection

logger = logging.getLogger(__name__)

RUN_EXECUTION = "runs.run_execution"
REAP_STALE = "runs.reap_stale_executions"
NOOP = "runs.noop"
#: the names of the same tasks before the engine moved out of apps.crews
LEGACY_NAMES = {
    RUN_EXECUTION: "apps.crews.tasks.run_execution",
    REAP_STALE: "apps.crews.tasks.reap_stale_executions",
    NOOP: "apps.crews.tasks.noop",
}


def _worker_name(task) -> str:
    hostname = getattr(task.request, "hostname", None) or f"worker@{socket.gethostname()}"
    return f"{hostname} (pid {os.getpid()})"


def _run_execution(self, execution_id: str) -> str:
    """Run one execution (any kind) to its end; a second delivery of the message is a no-op."""
    # deferred: cycle — apps.runs.lifecycle → apps.runs.services → this module, each at load
    from apps.runs.lifecycle import run

    return run(execution_id, worker=_worker_name(self))  # its log lines name the organization and the run


def _reap_stale_executions() -> dict:
    """Beat, every few seconds: runs whose worker stopped heartbeating end FAILED ("worker lost")
    or go back to the queue per their retry policy; PENDING runs whose message was lost are re-queued."""
    # deferred: cycle — apps.runs.reaper → apps.runs.services → this module, each at load
    from apps.runs.reaper import reap_stale, requeue_forgotten

    counts = reap_stale()
    counts["requeued_forgotten"] = requeue_forgotten()
    if any(counts.values()):
        logger.warning("reaper: %s", counts)
    return counts


def _noop(counter_key: str | None = None) -> None:
    """The bare-Celery baseline of bench B4: nothing but (optionally) counting that it ran."""
    if counter_key:
        get_redis_connection("default").incr(counter_key)


_RUN_OPTIONS = {"bind": True, "acks_late": True, "reject_on_worker_lost": True, "ignore_result": True}
run_execution = shared_task(name=RUN_EXECUTION, **_RUN_OPTIONS)(_run_execution)
reap_stale_executions = shared_task(name=REAP_STALE, ignore_result=True)(_reap_stale_executions)
noop = shared_task(name=NOOP, acks_late=True, ignore_result=True)(_noop)

# aliases under the old names (same code, same options)
legacy_run_execution = shared_task(name=LEGACY_NAMES[RUN_EXECUTION], **_RUN_OPTIONS)(_run_execution)
legacy_reap_stale_executions = shared_task(name=LEGACY_NAMES[REAP_STALE], ignore_result=True)(_reap_stale_executions)
legacy_noop = shared_task(name=LEGACY_NAMES[NOOP], acks_late=True, ignore_result=True)(_noop)
