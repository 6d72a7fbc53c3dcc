"""When the engine runs besides a step's end: advance messages (now, on commit, after a countdown),
a step's ``timeout_ms`` falling due, and beat's sweep of runs no event advanced."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.runs.services import execution_cancel
from apps.workflows.engine.dag import S
from apps.workflows.models import StepRun, StepState, WorkflowRun
from apps.workflows.tasks import advance
from kai_platform.api.errors.exceptions import Conflict


def advance_later(execution_id, *, countdown: float | None = None) -> None:
    options: dict[str, str | float] = {"queue": settings.CELERY_TASK_DEFAULT_QUEUE}
    if countdown and countdown > 0:
        options["countdown"] = countdown
    advance.apply_async(args=[str(execution_id)], **options)


def advance_on_commit(execution_id, *, countdown: float | None = None) -> None:
    transaction.on_commit(partial(advance_later, execution_id, countdown=countdown), robust=True)


def workflow_step_timeout(*, step_run_id) -> str:
    """The step's ``timeout_ms`` passed: cancel its execution if it is still going."""
    with transaction.atomic():
        step_run = (
            StepRun.objects.select_for_update(of=("self",)).select_related("execution").filter(pk=step_run_id).first()
        )
        if step_run is None or step_run.state != StepState.ACTIVE or step_run.execution is None:
            return "gone"
        if step_run.execution.is_terminal:
            return "ended"
        step_run.timed_out = True
        step_run.save(update_fields=["timed_out", "updated_at"])
        try:
            execution_cancel(execution=step_run.execution, actor=None, reason=f"step {step_run.step_id!r} timed out")
        except Conflict:
            return "ended"
    return "timed_out"


def workflow_sweep(*, stale_seconds: int = 60, limit: int = 500) -> int:
    """Beat's safety net: advance live runs that are due (deadline passed, cancel requested) or that
    no event advanced for a while (an advance message lost with a killed worker)."""
    now = timezone.now()
    due = (
        WorkflowRun.objects.filter(execution__status__in=[S.PREPARING, S.RUNNING, S.WAITING_FOR_APPROVAL])
        .filter(
            Q(deadline_at__lte=now)
            | Q(execution__cancel_requested=True)
            | Q(advanced_at__lt=now - timedelta(seconds=stale_seconds))
            | Q(advanced_at__isnull=True, created_at__lt=now - timedelta(seconds=stale_seconds))
        )
        .values_list("execution_id", flat=True)[:limit]
    )
    count = 0
    for execution_id in due:
        advance_later(execution_id)
        count += 1
    # runs whose retry delay fell due while their countdown message was lost
    for execution_id in (
        StepRun.objects.filter(state=StepState.SCHEDULED, scheduled_for__lt=now - timedelta(seconds=5))
        .values_list("run__execution_id", flat=True)
        .distinct()[:limit]
    ):
        advance_later(execution_id)
        count += 1
    return count
