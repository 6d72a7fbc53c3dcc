"""The DAG engine of workflow runs.

The engine is event-driven and durable: ``workflow_advance(execution_id=)`` (the Celery task
``workflows.advance``) locks the run, settles step attempts whose execution ended, applies the
retry policy and the error strategy, starts every step whose dependencies are met (each as an
``Execution`` of kind ``workflow_step``, queued on commit) and ends the run when nothing is left.
It runs whenever a step's execution reaches a terminal status (a run-engine hook), when a retry's
backoff or a timeout falls due (countdown), and from the beat sweep; every call is idempotent.

Its parts: ``dag`` (the run's steps and attempts as the engine reasons about them), ``walk`` (one
advance: settle, retry or fail, start what is ready, finish), ``steps`` (starting, settling, skipping
and stopping attempts), ``approvals`` (approval steps and their answers), ``timers`` (advance
messages, step timeouts and the beat sweep).
"""

from apps.workflows.engine.approvals import approval_answered
from apps.workflows.engine.dag import S, step_status
from apps.workflows.engine.steps import stop_live_steps
from apps.workflows.engine.timers import advance_later, advance_on_commit, workflow_step_timeout, workflow_sweep
from apps.workflows.engine.walk import workflow_advance

__all__ = [
    "S",
    "advance_later",
    "advance_on_commit",
    "approval_answered",
    "step_status",
    "stop_live_steps",
    "workflow_advance",
    "workflow_step_timeout",
    "workflow_sweep",
]
