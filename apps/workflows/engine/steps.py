"""Step attempts: start one (an ``Execution`` of kind ``workflow_step``, queued on commit, its
timeout armed), settle one whose execution ended, skip one whose condition is false, stop live ones."""

from __future__ import annotations

import json
from functools import partial

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.agents.models import Agent
from apps.runs.models import TERMINAL_STATUSES, Execution, ExecutionKind
from apps.runs.services import execution_create, execution_transition
from apps.workflows import conditions
from apps.workflows.definition import extra_step_type, is_approval
from apps.workflows.engine.approvals import start_approval
from apps.workflows.engine.dag import Dag, S, find_step, step_status
from apps.workflows.models import LIVE_STEP_STATES, StepRun, StepState, WorkflowRun
from apps.workflows.tasks import step_timeout

#: how much of a dependency's output a step's context carries
OUTPUT_CONTEXT_CHARS = 2000


def settle(dag: Dag, step_run: StepRun, now) -> None:
    execution = step_run.execution
    if execution is None:
        step_run.state, step_run.error = StepState.FAILED, "its execution no longer exists"
    elif execution.status == S.COMPLETED:
        step_run.state, step_run.output, step_run.error = StepState.COMPLETED, execution.result, ""
    elif step_run.timed_out:
        step_run.state = StepState.TIMED_OUT
        step = find_step(dag, step_run)
        step_run.error = f"timed out after {(step or {}).get('timeout_ms')} ms"
    elif execution.status == S.CANCELLED:
        step_run.state, step_run.error = StepState.CANCELLED, execution.error or "cancelled"
    else:
        step_run.state, step_run.error = StepState.FAILED, execution.error or "failed"
    step_run.started_at = (execution.started_at or execution.created_at) if execution else step_run.started_at
    step_run.completed_at = (execution.completed_at if execution else None) or now
    step_run.save(update_fields=["state", "output", "error", "started_at", "completed_at", "updated_at"])
    dag.events.append(
        (
            "workflow.step_completed",
            {
                "workflow_id": str(dag.run.workflow_id),
                "execution_id": str(dag.run.execution_id),
                "run_id": str(dag.run.pk),
                "step_id": step_run.step_id,
                "attempt": step_run.attempt,
                "status": step_status(step_run),
                "result": step_run.output,
                "error": step_run.error or None,
                "fallback": step_run.fallback,
                "step_execution_id": str(step_run.execution_id or "") or None,
            },
            "info" if step_run.state == StepState.COMPLETED else "warning",
        )
    )


def start_attempt(dag: Dag, step: dict, *, fallback: bool, attempt: int, step_run: StepRun | None, now) -> None:
    """Create the attempt's execution (queued on commit) and make the step run ACTIVE."""
    if is_approval(step):
        return start_approval(dag, step, fallback=fallback, attempt=attempt, step_run=step_run, now=now)
    context = dag.context()
    extra = extra_step_type(step)
    if extra is not None:  # another app's step type: no agent; its fields rendered into the definition
        agent, inputs, definition = None, *_extra_step(step, context, extra)
    else:
        agent, inputs, definition = _agent_step(dag.run, step, context)
    definition.update(step_id=step["id"], attempt=attempt, workflow_id=str(dag.run.workflow_id), run_id=str(dag.run.pk))
    _start_execution(
        dag,
        step,
        fallback=fallback,
        attempt=attempt,
        step_run=step_run,
        now=now,
        agent=agent,
        inputs=inputs,
        definition=definition,
    )


def _extra_step(step: dict, context: dict, extra) -> tuple[dict, dict]:
    """Another app's step type: its template fields rendered (the inputs), and the step as its definition."""
    fields = {k: conditions.render(step[k], context) for k in extra.template_keys if k in step}
    definition = {
        **{k: v for k, v in step.items() if k not in ("depends_on", "condition")},
        **fields,
        "type": extra.name,
    }
    return fields, definition


def _agent_step(run: WorkflowRun, step: dict, context: dict) -> tuple[Agent | None, dict, dict]:
    """An agent's step: the agent, its rendered parameters (the inputs), and the definition with
    the outputs of its dependencies (each cut to ``OUTPUT_CONTEXT_CHARS``)."""
    parameters = conditions.render(step.get("parameters") or {}, context)
    agents = Agent.objects.for_org(run.organization_id)
    if "agent_number" in step:
        agent = agents.filter(agent_number=step["agent_number"]).first()
    else:
        agent = agents.filter(pk=step["agent_id"]).first()
    deps = {}
    for dep in step.get("depends_on") or []:
        output = context["steps"].get(dep, {}).get("output")
        if output is not None:
            text = output if isinstance(output, str) else json.dumps(output, default=str)
            deps[dep] = text[:OUTPUT_CONTEXT_CHARS]
    return agent, parameters, {"action": step["action"], "parameters": parameters, "context": deps}


def _start_execution(
    dag: Dag,
    step: dict,
    *,
    fallback: bool,
    attempt: int,
    step_run: StepRun | None,
    now,
    agent,
    inputs,
    definition: dict,
) -> None:
    """The attempt's execution (queued on commit), the step run ACTIVE, its timeout armed."""
    run = dag.run
    execution = execution_create(
        organization=run.organization,
        actor=None,
        kind=ExecutionKind.WORKFLOW_STEP,
        run_name=f"{run.workflow.name} · {step['id']}" + (f" (attempt {attempt})" if attempt > 1 else ""),
        agent=agent,
        parent=run.execution,
        inputs=inputs,
        definition=definition,
        params=step.get("llm_params") or {},
        priority=run.execution.priority,
        max_attempts=1,
    )
    if step_run is None:
        step_run = StepRun(
            organization_id=run.organization_id, run=run, step_id=step["id"], fallback=fallback, attempt=attempt
        )
    step_run.state = StepState.ACTIVE
    step_run.execution = execution
    step_run.agent = agent
    step_run.inputs = inputs
    step_run.started_at = now
    step_run.save()
    dag.latest[(fallback, step["id"])] = step_run
    if step.get("timeout_ms"):
        transaction.on_commit(
            partial(
                step_timeout.apply_async,
                args=[str(step_run.pk)],
                countdown=step["timeout_ms"] / 1000,
                queue=settings.CELERY_TASK_DEFAULT_QUEUE,
            ),
            robust=True,
        )


def skip(dag: Dag, step: dict, *, fallback: bool, now, reason: str) -> None:
    step_run = StepRun.objects.create(
        organization_id=dag.run.organization_id,
        run=dag.run,
        step_id=step["id"],
        fallback=fallback,
        attempt=1,
        state=StepState.SKIPPED,
        error=reason,
        started_at=now,
        completed_at=now,
    )
    dag.latest[(fallback, step["id"])] = step_run
    dag.events.append(
        (
            "workflow.step_completed",
            {
                "workflow_id": str(dag.run.workflow_id),
                "execution_id": str(dag.run.execution_id),
                "run_id": str(dag.run.pk),
                "step_id": step["id"],
                "attempt": 1,
                "status": "SKIPPED",
                "result": None,
                "error": None,
                "reason": reason,
                "fallback": fallback,
            },
            "info",
        )
    )


def stop_live_steps(run: WorkflowRun, *, include_fallback: bool, reason: str) -> int:
    """Cancel live attempts (scheduled ones at once, running ones through the run engine)."""
    live = StepRun.objects.filter(run=run, state__in=LIVE_STEP_STATES).select_related("execution")
    if not include_fallback:
        live = live.filter(fallback=False)
    running = []
    for step_run in live:
        if step_run.state == StepState.SCHEDULED:
            step_run.state, step_run.error, step_run.completed_at = StepState.CANCELLED, reason, timezone.now()
            step_run.save(update_fields=["state", "error", "completed_at", "updated_at"])
        elif step_run.execution_id:
            running.append(step_run.execution_id)
    if not running:
        return 0
    # One statement flags them all (a running runner sees the flag within its heartbeat and ends its
    # run CANCELLED, which advances the run again); then the ones no worker claimed yet end at once.
    flagged = list(
        Execution.objects.filter(pk__in=running, cancel_requested=False)
        .exclude(status__in=TERMINAL_STATUSES)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    Execution.objects.filter(pk__in=flagged).update(cancel_requested=True, updated_at=timezone.now())
    for execution_id in flagged:
        execution_transition(
            execution_id=execution_id, to=S.CANCELLED, reason=reason, only_from={S.PENDING, S.WAITING_FOR_APPROVAL}
        )  # no worker holds these
    return len(running)


def stop_and_refresh(dag: Dag, *, include_fallback: bool, reason: str) -> None:
    stop_live_steps(dag.run, include_fallback=include_fallback, reason=reason)
    for step_run in StepRun.objects.filter(run=dag.run, state=StepState.CANCELLED, execution__isnull=True):
        key = (step_run.fallback, step_run.step_id)
        if key in dag.latest and dag.latest[key].pk == step_run.pk:
            dag.latest[key] = step_run
