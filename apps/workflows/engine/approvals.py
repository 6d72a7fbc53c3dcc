"""Approval steps: their execution parks WAITING_FOR_APPROVAL and a person is asked; the answer
ends it; the run shows WAITING_FOR_APPROVAL while approvals are all it waits for."""

from __future__ import annotations

import json

from django.db import transaction

from apps.approvals.models import ApprovalSource, ApprovalStatus
from apps.approvals.services import approval_request_for_execution
from apps.runs.models import Execution, ExecutionKind
from apps.runs.services import execution_create, execution_transition
from apps.workflows import conditions
from apps.workflows.definition import approval_deadline, approval_question
from apps.workflows.engine.dag import Dag, S
from apps.workflows.models import StepRun, StepState, WorkflowRun


def _default_proposed(step: dict, context: dict):
    """An approval step without ``proposed`` proposes its dependency's output (an object of the
    outputs when it has several, null when none)."""
    deps = list(step.get("depends_on") or [])
    outputs = {dep: context["steps"].get(dep, {}).get("output") for dep in deps}
    if len(deps) == 1:
        return outputs[deps[0]]
    return outputs or None


def start_approval(dag: Dag, step: dict, *, fallback: bool, attempt: int, step_run: StepRun | None, now) -> None:
    """An approval step: its execution goes PENDING → PREPARING → RUNNING → WAITING_FOR_APPROVAL at
    once (no worker ever claims it) and a person is asked; the answer ends it (``approval_answered``)."""
    run = dag.run
    context = dag.context()
    question = conditions.render(approval_question(step), context)
    question = question if isinstance(question, str) else json.dumps(question, default=str)
    proposed = conditions.render(step["proposed"], context) if "proposed" in step else _default_proposed(step, context)
    inputs = {"question": question, "proposed": proposed}
    execution = execution_create(
        organization=run.organization,
        actor=None,
        kind=ExecutionKind.WORKFLOW_STEP,
        run_name=f"{run.workflow.name} · {step['id']} (approval)",
        parent=run.execution,
        inputs=inputs,
        definition={
            "type": "approval",
            "question": question,
            "step_id": step["id"],
            "attempt": attempt,
            "workflow_id": str(run.workflow_id),
            "run_id": str(run.pk),
        },
        priority=run.execution.priority,
        max_attempts=1,
        enqueue=False,
    )
    if step_run is None:
        step_run = StepRun(
            organization_id=run.organization_id, run=run, step_id=step["id"], fallback=fallback, attempt=attempt
        )
    step_run.state, step_run.execution, step_run.agent = StepState.ACTIVE, execution, None
    step_run.inputs, step_run.started_at = inputs, now
    step_run.save()
    dag.latest[(fallback, step["id"])] = step_run
    execution_transition(
        execution_id=execution.pk, to=S.PREPARING, reason="approval step", worker="workflow engine", heartbeat_at=None
    )
    execution_transition(execution_id=execution.pk, to=S.RUNNING, reason="asking for approval", heartbeat_at=None)
    _ask(run, step, execution, question=question, proposed=proposed)


def _ask(run: WorkflowRun, step: dict, execution, *, question: str, proposed) -> None:
    """Park the approval step's execution and ask its assignee; the execution fails when the
    assignee can no longer be asked, and is cancelled when its cancel came first."""
    request = {
        "question": question,
        "source": ApprovalSource.WORKFLOW_STEP,
        "proposed": proposed,
        "workflow_run": run.pk,
        "step_id": step["id"],
        "default_action": step.get("default_action") or "reject",
        "assignee_role": step.get("assignee_role") or "",
        "assignee_user": step.get("assignee_user"),
        "timeout_seconds": step.get("timeout_seconds"),
        "deadline": approval_deadline(step),
    }
    try:
        with transaction.atomic():
            asked = approval_request_for_execution(
                execution=execution, request=request, checkpoint={"step_id": step["id"], "run_id": str(run.pk)}
            )
    except ValueError as exc:  # its assignee left the organization since the workflow was saved
        execution_transition(
            execution_id=execution.pk,
            to=S.FAILED,
            reason=f"could not ask for approval: {exc}",
            error=f"could not ask for approval: {exc}",
        )
        return
    if not asked:
        execution_transition(execution_id=execution.pk, to=S.CANCELLED, reason="cancelled before it was asked")


def approval_answered(approval) -> None:
    """The ``workflow_step`` resolution handler (inside the answering transaction): approve → the
    step's execution COMPLETED with the edited (or proposed) value as its output; reject, or a
    deadline whose default is reject → FAILED with the feedback. Either way its terminal hook
    advances the run on commit, where the usual strategy applies."""
    if not approval.execution_id:
        return
    execution = (
        Execution.objects.filter(pk=approval.execution_id, status=S.WAITING_FOR_APPROVAL)
        .only("pk", "started_at", "inputs")
        .first()
    )
    if execution is None:  # it ended meanwhile (cancelled, the run failed)
        return
    who = (
        "the deadline's default"
        if approval.timed_out
        else (approval.resolved_by.email if approval.resolved_by_id and approval.resolved_by else "a reviewer")
    )
    waiting = {S.WAITING_FOR_APPROVAL}
    if approval.status == ApprovalStatus.APPROVED:
        output = (
            approval.edited_value if approval.edited_value is not None else (execution.inputs or {}).get("proposed")
        )
        if execution_transition(
            execution_id=execution.pk,
            to=S.RUNNING,
            only_from=waiting,
            heartbeat_at=None,
            started_at=execution.started_at,
            reason=f"approved by {who}",
        ):
            execution_transition(
                execution_id=execution.pk,
                to=S.COMPLETED,
                result=output,
                error="",
                reason=f"approved by {who}" + (" (edited)" if approval.edited_value is not None else ""),
            )
        return
    reason = f"approval rejected by {who}"
    if approval.feedback:
        reason += f": {approval.feedback}"
    execution_transition(execution_id=execution.pk, to=S.FAILED, only_from=waiting, reason=reason, error=reason)


def sync_waiting(dag: Dag) -> None:
    """The run shows WAITING_FOR_APPROVAL while all it has live are approval steps waiting for an
    answer (no slot of the concurrency cap, nothing to sweep), and RUNNING otherwise."""
    run = dag.run
    live = [sr.execution_id for sr in dag.live() if sr.state == StepState.ACTIVE and sr.execution_id]
    waiting = (
        bool(live)
        and len(live) == len(dag.live())
        and Execution.objects.filter(pk__in=live, status=S.WAITING_FOR_APPROVAL).count() == len(live)
    )
    status = run.execution.status
    if waiting and status == S.RUNNING:
        steps = sorted(sr.step_id for sr in dag.live())
        if execution_transition(
            execution_id=run.execution_id,
            to=S.WAITING_FOR_APPROVAL,
            only_from={S.RUNNING},
            unless_cancel_requested=True,
            heartbeat_at=None,
            reason="waiting for approval: " + ", ".join(steps),
        ):
            run.execution.status = S.WAITING_FOR_APPROVAL
    elif not waiting and status == S.WAITING_FOR_APPROVAL:
        if execution_transition(
            execution_id=run.execution_id,
            to=S.RUNNING,
            only_from={S.WAITING_FOR_APPROVAL},
            heartbeat_at=None,
            started_at=run.execution.started_at,
            reason="approval answered; running",
        ):
            run.execution.status = S.RUNNING
