"""The DAG engine of workflow runs.

The engine is event-driven and durable: ``workflow_advance(execution_id=)`` (the Celery task
``workflows.advance``) locks the run, settles step attempts whose execution ended, applies the
retry policy and the error strategy, starts every step whose dependencies are met (each as an
``Execution`` of kind ``workflow_step``, queued on commit) and ends the run when nothing is left.
It runs whenever a step's execution reaches a terminal status (a run-engine hook), when a retry's
backoff or a timeout falls due (countdown), and from the beat sweep; every call is idempotent.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from apps.agents.models import Agent
from apps.approvals.models import ApprovalSource, ApprovalStatus
from apps.approvals.services import approval_request_for_execution
from apps.events.services import publish
from apps.runs.models import TERMINAL_STATUSES, Execution, ExecutionKind, ExecutionStatus
from apps.runs.services import execution_cancel, execution_create, execution_transition
from apps.workflows import conditions
from apps.workflows.definition import approval_deadline, approval_question, backoff_ms, extra_step_type, is_approval
from apps.workflows.models import FAILED_STEP_STATES, LIVE_STEP_STATES, Phase, StepRun, StepState, Workflow, WorkflowRun
from apps.workflows.tasks import advance, step_timeout
from kai_platform.api.errors.exceptions import Conflict

logger = logging.getLogger(__name__)


S = ExecutionStatus
OUTPUT_CONTEXT_CHARS = 2000


def advance_later(execution_id, *, countdown: float | None = None) -> None:
    options = {"queue": settings.CELERY_TASK_DEFAULT_QUEUE}
    if countdown and countdown > 0:
        options["countdown"] = countdown
    advance.apply_async(args=[str(execution_id)], **options)


def advance_on_commit(execution_id, *, countdown: float | None = None) -> None:
    transaction.on_commit(partial(advance_later, execution_id, countdown=countdown), robust=True)


# --- the engine --------------------------------------------------------------------------------


def step_status(step_run: StepRun | None) -> str:
    if step_run is None:
        return "PENDING"
    if (
        step_run.state == StepState.ACTIVE
        and step_run.execution_id
        and step_run.execution is not None
        and step_run.execution.status == S.WAITING_FOR_APPROVAL
    ):
        return str(S.WAITING_FOR_APPROVAL)
    return {StepState.SCHEDULED: "SCHEDULED", StepState.ACTIVE: "RUNNING"}.get(step_run.state, step_run.state.upper())


def _json_or_none(value):
    if isinstance(value, (dict, list)):
        return value
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            return None
    return None


class _Dag:
    """The run's steps and their attempts, as the engine reasons about them."""

    def __init__(self, run: WorkflowRun, definition: dict, step_runs: list[StepRun]):
        self.run = run
        self.definition = definition
        self.main = definition["steps"]
        self.fallback = definition["error_handling"].get("fallback_steps") or []
        self.strategy = definition["error_handling"].get("strategy") or "fail_fast"
        self.policy = definition.get("retry_policy") or {}
        self.max_attempts = int(self.policy.get("max_attempts") or 1)
        self.latest: dict[tuple[bool, str], StepRun] = {}
        #: events published at the end of the advance: taking the organization's event lock only after
        #: every execution row this advance locks keeps the lock order of the run engine (row, then events)
        self.events: list[tuple[str, dict, str]] = []
        for step_run in step_runs:
            key = (step_run.fallback, step_run.step_id)
            if key not in self.latest or step_run.attempt >= self.latest[key].attempt:
                self.latest[key] = step_run

    def latest_of(self, step: dict, fallback: bool) -> StepRun | None:
        return self.latest.get((fallback, step["id"]))

    def live(self) -> list[StepRun]:
        return [sr for sr in self.latest.values() if sr.state in LIVE_STEP_STATES]

    def done(self, step_run: StepRun | None) -> bool:
        """Counts as finished for its dependents."""
        if step_run is None:
            return False
        if step_run.state in (StepState.COMPLETED, StepState.SKIPPED):
            return True
        return step_run.state in FAILED_STEP_STATES and self.strategy == "continue" and not step_run.fallback

    def context(self) -> dict:
        steps = {}
        for (fallback, step_id), sr in self.latest.items():
            steps[step_id] = {
                "status": step_status(sr),
                "output": sr.output,
                "result": sr.output,
                "json": _json_or_none(sr.output),
                "error": sr.error or None,
                "attempts": sr.attempt,
                "skipped": sr.state == StepState.SKIPPED,
                "failed": sr.state in FAILED_STEP_STATES,
                "completed": sr.state == StepState.COMPLETED,
                "fallback": fallback,
            }
        return {
            "inputs": self.run.inputs or {},
            "steps": steps,
            "trigger": {
                "type": self.run.trigger_type,
                "source": self.run.trigger_source,
                "data": self.run.trigger_data or {},
            },
        }


def _settle(dag: _Dag, step_run: StepRun, now) -> None:
    execution = step_run.execution
    if execution is None:
        step_run.state, step_run.error = StepState.FAILED, "its execution no longer exists"
    elif execution.status == S.COMPLETED:
        step_run.state, step_run.output, step_run.error = StepState.COMPLETED, execution.result, ""
    elif step_run.timed_out:
        step_run.state = StepState.TIMED_OUT
        step = _find_step(dag, step_run)
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


def _find_step(dag: _Dag, step_run: StepRun) -> dict | None:
    steps = dag.fallback if step_run.fallback else dag.main
    return next((s for s in steps if s["id"] == step_run.step_id), None)


def _start_attempt(dag: _Dag, step: dict, *, fallback: bool, attempt: int, step_run: StepRun | None, now) -> None:
    """Create the attempt's execution (queued on commit) and make the step run ACTIVE."""
    if is_approval(step):
        return _start_approval(dag, step, fallback=fallback, attempt=attempt, step_run=step_run, now=now)
    run = dag.run
    context = dag.context()
    extra = extra_step_type(step)
    if extra is not None:  # another app's step type: no agent; its fields rendered into the definition
        fields = {k: conditions.render(step[k], context) for k in extra.template_keys if k in step}
        definition = {
            **{k: v for k, v in step.items() if k not in ("depends_on", "condition")},
            **fields,
            "type": extra.name,
            "step_id": step["id"],
            "attempt": attempt,
            "workflow_id": str(run.workflow_id),
            "run_id": str(run.pk),
        }
        return _start_execution(
            dag,
            step,
            fallback=fallback,
            attempt=attempt,
            step_run=step_run,
            now=now,
            agent=None,
            inputs=fields,
            definition=definition,
        )
    parameters = conditions.render(step.get("parameters") or {}, context)
    if "agent_number" in step:
        agent = Agent.objects.for_org(run.organization_id).filter(agent_number=step["agent_number"]).first()
    else:
        agent = Agent.objects.for_org(run.organization_id).filter(pk=step["agent_id"]).first()
    deps = {}
    for dep in step.get("depends_on") or []:
        output = context["steps"].get(dep, {}).get("output")
        if output is not None:
            text = output if isinstance(output, str) else json.dumps(output, default=str)
            deps[dep] = text[:OUTPUT_CONTEXT_CHARS]
    return _start_execution(
        dag,
        step,
        fallback=fallback,
        attempt=attempt,
        step_run=step_run,
        now=now,
        agent=agent,
        inputs=parameters,
        definition={
            "action": step["action"],
            "parameters": parameters,
            "context": deps,
            "step_id": step["id"],
            "attempt": attempt,
            "workflow_id": str(run.workflow_id),
            "run_id": str(run.pk),
        },
    )


def _start_execution(
    dag: _Dag,
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


def _default_proposed(step: dict, context: dict):
    """An approval step without ``proposed`` proposes its dependency's output (an object of the
    outputs when it has several, null when none)."""
    deps = list(step.get("depends_on") or [])
    outputs = {dep: context["steps"].get(dep, {}).get("output") for dep in deps}
    if len(deps) == 1:
        return outputs[deps[0]]
    return outputs or None


def _start_approval(dag: _Dag, step: dict, *, fallback: bool, attempt: int, step_run: StepRun | None, now) -> None:
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


def _sync_waiting(dag: _Dag) -> None:
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


def _skip(dag: _Dag, step: dict, *, fallback: bool, now, reason: str) -> None:
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


def _stop_and_refresh(dag: _Dag, *, include_fallback: bool, reason: str) -> None:
    stop_live_steps(dag.run, include_fallback=include_fallback, reason=reason)
    for step_run in StepRun.objects.filter(run=dag.run, state=StepState.CANCELLED, execution__isnull=True):
        key = (step_run.fallback, step_run.step_id)
        if key in dag.latest and dag.latest[key].pk == step_run.pk:
            dag.latest[key] = step_run


def workflow_advance(*, execution_id) -> str:
    """Move the run forward as far as it can go now. Idempotent; safe to call at any time."""
    now = timezone.now()
    with transaction.atomic():
        run = (
            WorkflowRun.objects.select_for_update(of=("self",))
            .select_related("execution", "workflow_version", "workflow", "organization")
            .filter(execution_id=execution_id)
            .first()
        )
        if run is None:
            return "missing"
        if run.execution.is_terminal:
            stop_live_steps(run, include_fallback=True, reason=f"the workflow run ended ({run.execution.status})")
            return f"ended ({run.execution.status})"
        step_runs = list(StepRun.objects.filter(run=run).select_related("execution"))
        dag = _Dag(run, run.workflow_version.definition, step_runs)
        changed_fields = {"advanced_at"}
        run.advanced_at = now
        # 1. attempts whose execution ended
        for step_run in step_runs:
            if step_run.state == StepState.ACTIVE and (step_run.execution is None or step_run.execution.is_terminal):
                _settle(dag, step_run, now)
        changed_fields |= _cancel_or_time_out(dag, now)  # 2.
        changed_fields |= _retry_or_fail(dag, now)  # 3.
        # 4. stop what must stop
        if run.phase in (Phase.FAILING, Phase.CANCELLING):
            _stop_and_refresh(dag, include_fallback=True, reason=run.error or "the workflow run is stopping")
        elif run.phase == Phase.FALLBACK:
            _stop_and_refresh(dag, include_fallback=False, reason=f"fallback after {run.error}")
        if run.phase in (Phase.MAIN, Phase.FALLBACK):
            _start_ready(dag, now)  # 5.
            _sync_waiting(dag)
        run.save(update_fields=[*changed_fields, "updated_at"])
        for event_type, data, severity in dag.events:
            publish(
                run.organization_id,
                event_type,
                data,
                execution=run.execution_id,
                component="workflows",
                severity=severity,
            )
        return _end_or_wait(dag, now)  # 6.


def _cancel_or_time_out(dag: _Dag, now) -> set:
    """A cancel was requested or the run's deadline passed: the phase to enter. Answers the changed fields."""
    run, changed = dag.run, set()
    if run.execution.cancel_requested and run.phase != Phase.CANCELLING:
        run.phase, run.error = Phase.CANCELLING, "cancelled by user"
        changed |= {"phase", "error"}
    if run.deadline_at and now >= run.deadline_at and run.phase not in (Phase.CANCELLING, Phase.FAILING):
        run.phase = Phase.FAILING
        run.error = f"the workflow timed out after {dag.definition.get('timeout_ms')} ms"
        changed |= {"phase", "error"}
    return changed


def _retry_or_fail(dag: _Dag, now) -> set:
    """Failed steps of the current phase: a retry per the policy, else the error strategy (continue,
    fallback, fail). Answers the changed fields of the run."""
    run = dag.run
    for (fallback, step_id), step_run in list(dag.latest.items()):
        if step_run.state not in FAILED_STEP_STATES:
            continue
        in_phase = (run.phase == Phase.MAIN and not fallback) or (run.phase == Phase.FALLBACK and fallback)
        if not in_phase:
            continue
        if step_run.attempt < dag.max_attempts and not is_approval(_find_step(dag, step_run) or {}):
            delay = backoff_ms(dag.policy, step_run.attempt)
            due = (step_run.completed_at or now) + timedelta(milliseconds=delay)
            retry = StepRun.objects.create(
                organization_id=run.organization_id,
                run=run,
                step_id=step_id,
                fallback=fallback,
                attempt=step_run.attempt + 1,
                state=StepState.SCHEDULED,
                scheduled_for=due,
            )
            dag.latest[(fallback, step_id)] = retry
            advance_on_commit(run.execution_id, countdown=max(0.0, (due - now).total_seconds()) + 0.01)
            continue
        if not fallback and dag.strategy == "continue":
            continue
        reason = (
            f"step {step_id!r} failed"
            + (f" after {step_run.attempt} attempts" if step_run.attempt > 1 else "")
            + f": {step_run.error}"
        )
        if not fallback and dag.strategy == "fallback":
            run.phase, run.failed_step, run.error = Phase.FALLBACK, step_id, reason
        else:
            run.phase, run.failed_step = Phase.FAILING, step_id
            run.error = ("fallback " if fallback else "") + reason
        return {"phase", "failed_step", "error"}
    return set()


def _start_ready(dag: _Dag, now) -> None:
    """Start every step of the current phase whose dependencies are done (a retry once it is due);
    a step whose condition is false is skipped."""
    fallback = dag.run.phase == Phase.FALLBACK
    for step in dag.fallback if fallback else dag.main:
        current = dag.latest_of(step, fallback)
        if current is not None:
            if current.state == StepState.SCHEDULED and current.scheduled_for <= now:
                _start_attempt(dag, step, fallback=fallback, attempt=current.attempt, step_run=current, now=now)
            continue
        deps = [dag.latest.get((fallback, d)) for d in step.get("depends_on") or []]
        if not all(dag.done(d) for d in deps):
            continue
        if step.get("condition"):
            try:
                ok = conditions.check(step["condition"], dag.context())
            except conditions.ConditionError as exc:  # validated on save; never expected
                ok = False
                logger.warning("condition of step %s does not parse: %s", step["id"], exc)
            if not ok:
                _skip(dag, step, fallback=fallback, now=now, reason=f"condition is false: {step['condition']}")
                continue
        _start_attempt(dag, step, fallback=fallback, attempt=1, step_run=None, now=now)


def _end_or_wait(dag: _Dag, now) -> str:
    """Finish the run when nothing is live and its phase is settled; else say what it waits for."""
    run = dag.run
    if dag.live():
        return "advanced"
    if run.phase == Phase.MAIN:
        if all(dag.done(dag.latest_of(s, False)) for s in dag.main):
            return _finish(dag, S.COMPLETED, now)
        return "waiting"
    if run.phase == Phase.FALLBACK:
        if all(
            dag.latest_of(s, True) is not None
            and dag.latest_of(s, True).state in (StepState.COMPLETED, StepState.SKIPPED)
            for s in dag.fallback
        ):
            return _finish(dag, S.COMPLETED, now)
        return "waiting"
    return _finish(dag, S.CANCELLED if run.phase == Phase.CANCELLING else S.FAILED, now)


def _finish(dag: _Dag, to: str, now) -> str:
    run = dag.run
    results = {}
    for (_fallback, step_id), step_run in dag.latest.items():
        results[step_id] = step_run.output
    failed = sorted(step_id for (fb, step_id), sr in dag.latest.items() if sr.state in FAILED_STEP_STATES)
    summary = {
        "results": results,
        "steps": {step_id: step_status(sr) for (fb, step_id), sr in dag.latest.items()},
        "failed_steps": failed,
        "fallback_used": run.phase == Phase.FALLBACK,
        "failed_step": run.failed_step or None,
    }
    error = "" if to == S.COMPLETED else (run.error or str(to).lower())
    if not execution_transition(
        execution_id=run.execution_id,
        to=to,
        reason=error or "all steps finished",
        result=summary,
        error=error if to == S.FAILED else "",
    ):
        return "lost"
    run.results = results
    run.counted = to in (S.COMPLETED, S.FAILED)
    run.save(update_fields=["results", "counted", "updated_at"])
    if to == S.COMPLETED:
        Workflow.objects.filter(pk=run.workflow_id).update(success_count=F("success_count") + 1)
    elif to == S.FAILED:
        Workflow.objects.filter(pk=run.workflow_id).update(failure_count=F("failure_count") + 1)
    _announce_end(dag, to, now, results=results, failed=failed, error=error)
    return str(to).lower()


def _announce_end(dag: _Dag, to: str, now, *, results: dict, failed: list, error: str) -> None:
    """``workflow.completed``, and ``workflow.error`` when a failed run's definition asks for it."""
    run = dag.run
    started = run.execution.started_at or run.created_at
    duration = round((now - started).total_seconds() * 1000, 2)
    publish(
        run.organization_id,
        "workflow.completed",
        {
            "workflow_id": str(run.workflow_id),
            "execution_id": str(run.execution_id),
            "run_id": str(run.pk),
            "success": to == S.COMPLETED,
            "status": str(to),
            "duration": duration,
            "results": results,
            "error": error or None,
            "failed_steps": failed,
            "fallback_used": run.phase == Phase.FALLBACK,
        },
        execution=run.execution_id,
        component="workflows",
        severity="info" if to == S.COMPLETED else "warning",
    )
    if to == S.FAILED and dag.definition["error_handling"].get("notification_on_error"):
        publish(
            run.organization_id,
            "workflow.error",
            {
                "workflow_id": str(run.workflow_id),
                "execution_id": str(run.execution_id),
                "run_id": str(run.pk),
                "error": error,
                "failed_step": run.failed_step or None,
            },
            execution=run.execution_id,
            component="workflows",
            severity="error",
        )


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
