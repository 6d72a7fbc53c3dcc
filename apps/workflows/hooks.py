"""The workflows app's hooks into the run engine (registered when the app is ready)."""

from __future__ import annotations

import logging

from django.conf import settings

from apps.approvals.models import ApprovalSource
from apps.approvals.services import register_resolution_handler
from apps.runs.models import ExecutionKind
from apps.runs.registry import on_execution_terminal
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


@on_execution_terminal(ExecutionKind.AGENT_TASK, ExecutionKind.AGENT_COMMAND, ExecutionKind.AGENT_EXECUTE)
def agent_run_ended(*, execution_id, status, kind, organization_id, agent_id, parent_id) -> None:
    """An agent run completed: if a workflow listens for that agent, start it (in a task)."""
    if status != "COMPLETED" or not agent_id:
        return

    if Workflow.objects.filter(
        organization_id=organization_id,
        trigger_type=TriggerType.AGENT_COMPLETION,
        trigger_agent_id=agent_id,
        is_active=True,
    ).exists():
        agent_completed.apply_async(args=[str(execution_id)], queue=settings.CELERY_TASK_DEFAULT_QUEUE)
