"""The workflows app's hooks into the run engine (registered when the app is ready)."""

from __future__ import annotations

import logging

from django.conf import settings

from apps.approvals.models import ApprovalSource
from apps.approvals.services import register_resolution_handler
from apps.runs.models import ExecutionKind
from apps.runs.registry import on_execution_terminal, on_executions_terminal
from apps.workflows.engine import advance_later
from apps.workflows.engine import approval_answered as answered
from apps.workflows.models import TriggerType, Workflow
from apps.workflows.tasks import agent_completed

logger = logging.getLogger(__name__)


@on_execution_terminal(ExecutionKind.WORKFLOW_STEP)
def step_ended(*, execution_id, status, kind, organization_id, agent_id, parent_id) -> None:
    """A step's execution ended: advance its run (on the default queue)."""
    if parent_id:
        advance_later(parent_id)


@on_execution_terminal(ExecutionKind.WORKFLOW)
def run_ended(*, execution_id, status, kind, organization_id, agent_id, parent_id) -> None:
    """A run cancelled from outside the engine (``executions/{id}/cancel`` ends a run parked
    WAITING_FOR_APPROVAL at once): advance it so its live steps stop and their approvals close."""
    if status == "CANCELLED":
        advance_later(execution_id)


@register_resolution_handler(ApprovalSource.WORKFLOW_STEP)
def approval_answered(approval) -> None:
    """A person (or the deadline's default) answered an approval step: end its execution."""
    answered(approval)


@on_executions_terminal(ExecutionKind.AGENT_TASK, ExecutionKind.AGENT_COMMAND, ExecutionKind.AGENT_EXECUTE)
def agent_runs_ended(ended: list[dict]) -> None:
    """Agent runs ended (a worker's batch): each completed one whose agent a workflow listens for
    starts it (in a task). One read for the whole batch."""
    done = [run for run in ended if run["status"] == "COMPLETED" and run["agent_id"]]
    if not done:
        return
    listened = set(
        Workflow.objects.filter(
            organization_id__in={run["organization_id"] for run in done},
            trigger_type=TriggerType.AGENT_COMPLETION,
            trigger_agent_id__in={run["agent_id"] for run in done},
            is_active=True,
        ).values_list("organization_id", "trigger_agent_id")
    )
    for run in done:
        if (run["organization_id"], run["agent_id"]) in listened:
            agent_completed.apply_async(args=[str(run["execution_id"])], queue=settings.CELERY_TASK_DEFAULT_QUEUE)
