"""Celery tasks of the workflows app. They take ids and are idempotent."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="workflows.advance", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def advance(execution_id: str) -> str:
    """Move the run (by its execution id) forward: settle, retry, start ready steps, finish."""
    # deferred: cycle — apps.workflows.engine imports this module at load
    from apps.workflows.engine import workflow_advance

    return workflow_advance(execution_id=execution_id)


@shared_task(name="workflows.step_timeout", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def step_timeout(step_run_id: str) -> str:
    """A step's timeout_ms passed: cancel its execution if it still runs."""
    # deferred: cycle — apps.workflows.engine imports this module at load
    from apps.workflows.engine import workflow_step_timeout

    return workflow_step_timeout(step_run_id=step_run_id)


@shared_task(name="workflows.agent_completed", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def agent_completed(execution_id: str) -> list:
    """An agent run completed: start the agent_completion workflows it triggers (once each)."""
    # deferred: cycle — apps.workflows.services → apps.workflows.engine → this module, each at load
    from apps.workflows.services import workflow_on_agent_completion

    return workflow_on_agent_completion(execution_id=execution_id)


@shared_task(name="workflows.sweep", ignore_result=True)
def sweep() -> int:
    """Beat: advance runs that are due or that no event advanced for a while."""
    # deferred: cycle — apps.workflows.engine imports this module at load
    from apps.workflows.engine import workflow_sweep

    return workflow_sweep()
