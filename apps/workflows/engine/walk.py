"""One advance of a workflow run: settle attempts whose execution ended, cancel or time out the
run, retry or fail per the policy and the error strategy, stop what must stop, start what is ready,
and finish the run when nothing is left."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from apps.events.services import publish
from apps.runs.services import execution_transition
from apps.workflows import conditions
from apps.workflows.definition import backoff_ms, is_approval
from apps.workflows.engine.approvals import sync_waiting
from apps.workflows.engine.dag import Dag, S, find_step, step_status
from apps.workflows.engine.steps import settle, skip, start_attempt, stop_and_refresh, stop_live_steps
from apps.workflows.engine.timers import advance_on_commit
from apps.workflows.models import FAILED_STEP_STATES, Phase, StepRun, StepState, Workflow, WorkflowRun

logger = logging.getLogger(__name__)


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
        dag = Dag(run, run.workflow_version.definition, step_runs)
        changed_fields = {"advanced_at"}
        run.advanced_at = now
        # 1. attempts whose execution ended
        for step_run in step_runs:
            if step_run.state == StepState.ACTIVE and (step_run.execution is None or step_run.execution.is_terminal):
                settle(dag, step_run, now)
        changed_fields |= _cancel_or_time_out(dag, now)  # 2.
        changed_fields |= _retry_or_fail(dag, now)  # 3.
        # 4. stop what must stop
        if run.phase in (Phase.FAILING, Phase.CANCELLING):
            stop_and_refresh(dag, include_fallback=True, reason=run.error or "the workflow run is stopping")
        elif run.phase == Phase.FALLBACK:
            stop_and_refresh(dag, include_fallback=False, reason=f"fallback after {run.error}")
        if run.phase in (Phase.MAIN, Phase.FALLBACK):
            _start_ready(dag, now)  # 5.
            sync_waiting(dag)
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


def _cancel_or_time_out(dag: Dag, now) -> set:
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


def _retry_or_fail(dag: Dag, now) -> set:
    """Failed steps of the current phase: a retry per the policy, else the error strategy (continue,
    fallback, fail). Answers the changed fields of the run."""
    run = dag.run
    for (fallback, step_id), step_run in list(dag.latest.items()):
        if step_run.state not in FAILED_STEP_STATES:
            continue
        in_phase = (run.phase == Phase.MAIN and not fallback) or (run.phase == Phase.FALLBACK and fallback)
        if not in_phase:
            continue
        if step_run.attempt < dag.max_attempts and not is_approval(find_step(dag, step_run) or {}):
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


def _start_ready(dag: Dag, now) -> None:
    """Start every step of the current phase whose dependencies are done (a retry once it is due);
    a step whose condition is false is skipped."""
    fallback = dag.run.phase == Phase.FALLBACK
    for step in dag.fallback if fallback else dag.main:
        current = dag.latest_of(step, fallback)
        if current is not None:
            if current.state == StepState.SCHEDULED and current.scheduled_for <= now:
                start_attempt(dag, step, fallback=fallback, attempt=current.attempt, step_run=current, now=now)
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
                skip(dag, step, fallback=fallback, now=now, reason=f"condition is false: {step['condition']}")
                continue
        start_attempt(dag, step, fallback=fallback, attempt=1, step_run=None, now=now)


def _end_or_wait(dag: Dag, now) -> str:
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
            (latest := dag.latest_of(s, True)) is not None and latest.state in (StepState.COMPLETED, StepState.SKIPPED)
            for s in dag.fallback
        ):
            return _finish(dag, S.COMPLETED, now)
        return "waiting"
    return _finish(dag, S.CANCELLED if run.phase == Phase.CANCELLING else S.FAILED, now)


def _finish(dag: Dag, to: str, now) -> str:
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


def _announce_end(dag: Dag, to: str, now, *, results: dict, failed: list, error: str) -> None:
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
