"""One execution from claim to end: PENDING → PREPARING → RUNNING → COMPLETED / FAILED / CANCELLED, parked
for an approval or queued again; the kind's registered runner does the work through a ``RunContext``
(``apps.runs.runner``)."""

from __future__ import annotations

import logging
import random
import time
from contextvars import Token
from datetime import date
from typing import TYPE_CHECKING, Any

from django.db import connection, transaction
from django.utils import timezone

from apps.runs import registry as plugins
from apps.runs.completion import complete, record_agent_runs
from apps.runs.inflight import registry
from apps.runs.intake import PLAN_CONCURRENCY, concurrency_cap, intake
from apps.runs.models import Execution, ExecutionStatus
from apps.runs.reaper import partial_enqueue
from apps.runs.runner import AwaitingApproval, Cancelled, RunContext, RunFailed
from apps.runs.services import execution_claim, execution_enqueue, execution_transition
from apps.runs.streams import stream_push
from kai_platform import drain, telemetry
from kai_platform.logging import log_context

if TYPE_CHECKING:
    from opentelemetry.context import Context

logger = logging.getLogger(__name__)
S = ExecutionStatus

__all__ = ["PLAN_CONCURRENCY", "claim", "concurrency_cap", "run", "with_citations"]


# --- claiming and running one execution --------------------------------------------------------


def claim(execution: Execution, *, worker: str, start: bool = False) -> str:
    """PENDING → PREPARING (→ RUNNING with ``start``) unless the organization is at its cap (a
    top-level run only). Returns "claimed", "over_cap" or "lost"."""
    cap = None
    if execution.parent_id is None:
        cap = (execution.organization_id, concurrency_cap(execution.organization))
    outcome, _ = execution_claim(
        execution_id=execution.pk, worker=worker, attempts=execution.attempts + 1, start=start, cap=cap
    )
    return outcome


def run(execution_id, *, worker: str) -> str:
    """Run one execution to its end. Idempotent: a run that ended or that another worker claimed
    returns at once. Returns what happened (for logs and tests). Every log line of the run names
    its organization and execution."""
    try:  # loaded, and claimed when it can be, in a batch with the runs taken at the same time
        taken = intake.take(execution_id, worker=worker)
        execution, outcome = taken.execution, taken.outcome
    except Exception:  # the batch failed: this run alone
        outcome = None
        execution = (
            Execution.objects.select_related("organization", "agent")  # created_by: only tools need it
            .filter(pk=execution_id)
            .first()
        )
    if execution is None:
        return "missing"
    with log_context(organization=execution.organization_id, execution=execution.pk):
        if outcome is not None:
            return _claimed(execution, outcome, worker=worker)
        return _run(execution, worker=worker)


def _run(execution: Execution, *, worker: str) -> str:
    if execution.status != S.PENDING:
        return f"skipped ({execution.status})"
    if drain.is_draining():  # a message taken just before the shutdown: leave it to another worker
        execution_enqueue(execution_id=execution.pk, priority=execution.priority)
        return "draining"
    if execution.cancel_requested:
        execution_transition(execution_id=execution.pk, to=S.CANCELLED, reason="cancelled before it started")
        return "cancelled"
    runner = plugins.runner_for(execution.kind)
    # PENDING → PREPARING → RUNNING in one statement (a kind with no runner stops at PREPARING and fails)
    return _claimed(execution, claim(execution, worker=worker, start=runner is not None), worker=worker)


def _claimed(execution: Execution, outcome: str, *, worker: str) -> str:
    """What follows the claim: the run's work when it was claimed, else queued again (over the
    organization's cap), cancelled (its cancel was requested) or left to whoever has it."""
    if outcome == "over_cap":
        delay = round(1.0 + random.random() * 2.0, 2)
        # still waiting, not forgotten (``requeue_forgotten`` leaves it alone)
        Execution.objects.filter(pk=execution.pk, status=S.PENDING).update(updated_at=timezone.now())
        execution_enqueue(execution_id=execution.pk, priority=execution.priority, countdown=delay)
        return "over_cap"
    if outcome != "claimed":
        # a run whose cancel was requested is never claimed: it ends here, never having started
        if Execution.objects.filter(
            pk=execution.pk, status=S.PENDING, cancel_requested=True
        ).exists() and execution_transition(
            execution_id=execution.pk, to=S.CANCELLED, reason="cancelled before it started", only_from={S.PENDING}
        ):
            return "cancelled"
        return "lost"
    connection.close()  # back to the pool while the runner works
    return _work(execution, plugins.runner_for(execution.kind), worker=worker)


def _work(execution: Execution, runner, *, worker: str) -> str:
    """Run a claimed execution's kind's runner and end it (or park it, or queue it again)."""
    handle = registry.add(execution.pk, worker=worker[:200])  # as the claim recorded it
    ctx, active = _context(execution, handle)
    started = time.monotonic()
    status: str = S.FAILED
    error = ""
    try:
        if runner is None:
            raise RunFailed(f"no runner is installed for runs of kind {execution.kind!r}")
        result = with_citations(runner(ctx), ctx.citations)
        ctx.recorder.log(
            "completed",
            tokens=ctx.recorder.total_tokens_in + ctx.recorder.total_tokens_out,
            cost=str(ctx.recorder.total_cost),
        )
        status = S.COMPLETED
        _complete(ctx, result)  # the agent's counters after the end
    except AwaitingApproval as exc:
        ctx.recorder.log(
            f"waiting for approval: {exc}", **{k: v for k, v in exc.request.items() if k in ("source", "step_id")}
        )
        _record_agent_stats(execution, time.monotonic() - started, "")
        status = _park(ctx, exc)
    except Cancelled as exc:
        if handle.lost:  # ended, or requeued by the reaper and now another worker's: leave it as it is
            ctx.recorder.ended = True
            status = S.PENDING
            logger.warning("run %s is no longer this worker's (%s); stopped", execution.pk, exc)
        elif handle.requeue:
            status = _requeue(ctx)
        else:
            status, error = S.CANCELLED, str(exc) or "cancelled"
            ctx.recorder.log(f"cancelled: {error}", level="warning")
            _record_agent_stats(execution, time.monotonic() - started, error)
            _end(ctx, S.CANCELLED, error)
    except RunFailed as exc:
        error = str(exc)
        ctx.recorder.log(f"failed: {error}", level="error")
        _record_agent_stats(execution, time.monotonic() - started, error)
        _end(ctx, S.FAILED, error, info=exc.info)
    except Exception as exc:
        logger.exception("execution %s crashed", execution.pk)
        error = f"internal error: {type(exc).__name__}: {exc}"
        ctx.recorder.log(f"failed: {error}", level="error")
        _record_agent_stats(execution, time.monotonic() - started, error)
        _end(ctx, S.FAILED, error)
    finally:
        telemetry.deactivate(active)
        telemetry.end_span(
            ctx.recorder.otel_root,
            status="error" if status == S.FAILED else "ok",
            error=error,
            cost=ctx.recorder.total_cost,
        )
        registry.remove(handle)
        if ctx._stream_key and status not in (S.WAITING_FOR_APPROVAL, S.PENDING):
            stream_push(ctx._stream_key, {"done": "1", "status": str(status), "error": error[:1000]})
        connection.close()
    return str(status).lower()


def _context(execution: Execution, handle) -> tuple[RunContext, Token[Context] | None]:
    """The run's context, its trace's root span made the active one."""
    ctx = RunContext(execution, handle)
    ctx.recorder.otel_root = telemetry.start_run_span(
        name=f"run {execution.kind}",
        trace_id=execution.trace_id,
        organization_id=execution.organization_id,
        execution_id=execution.pk,
        kind=execution.kind,
    )
    active = telemetry.activate(ctx.recorder.otel_root)  # database and Redis calls of the run go under it
    _restore_usage_keys(ctx)
    return ctx, active


def with_citations(result, citations: list):
    """A run's result with the citations its tools collected (each chunk once): added to a dict
    result, or ``{"output": <result>, "citations": […]}`` around any other; unchanged without any."""
    if not citations:
        return result
    unique = list({c.get("chunk_id") or repr(c): c for c in citations}.values())
    if isinstance(result, dict):
        return {**result, "citations": unique}
    return {"output": result, "citations": unique}


def _restore_usage_keys(ctx: RunContext) -> None:
    for agent, model, day in (ctx.execution.checkpoint or {}).get("usage_keys") or []:
        ctx.recorder._counted_usage_keys.add((agent, model, date.fromisoformat(day)))


def _complete(ctx: RunContext, result) -> None:
    """The last batch and the end in one transaction, the event last: batched with the runs
    ending at the same time (``apps.runs.completion``), or alone when that batch failed; then the
    agent's run counters (a waiter is woken first)."""
    try:
        complete(ctx, result)
        return
    except Exception:
        logger.warning("batched end of %s failed; ending it alone", ctx.execution.pk, exc_info=True)
    with transaction.atomic():
        ctx.recorder.flush()
        execution_transition(execution_id=ctx.execution.pk, to=S.COMPLETED, reason="completed", result=result, error="")
    _record_agent_stats(ctx.execution, ctx.elapsed(), "")


def _park(ctx: RunContext, pause: AwaitingApproval) -> str:
    """RUNNING → WAITING_FOR_APPROVAL with the checkpoint, and the approval asked, in one
    transaction; the worker then lets go of the run (a new task resumes it once answered).
    Returns the status the run is left in."""
    ctx.recorder.flush()
    # the usage rollup counted this run once per agent/model/day already; the resumed run must not again
    pause.checkpoint["usage_keys"] = [
        [agent, model, day.isoformat()] for agent, model, day in ctx.recorder._counted_usage_keys
    ]
    try:
        if plugins.service("approval_park")(ctx.execution, pause.request, pause.checkpoint):
            return S.WAITING_FOR_APPROVAL
    except Exception as exc:
        logger.exception("could not park execution %s for approval", ctx.execution.pk)
        _end(ctx, S.FAILED, f"could not ask for approval: {exc}")
        return S.FAILED
    _end(ctx, S.CANCELLED, "cancelled before the approval was asked")  # its cancel was requested meanwhile
    return S.CANCELLED


def _requeue(ctx: RunContext) -> str:
    """RUNNING → PENDING (its worker is shutting down) with what it spent recorded, queued again on
    commit; a run that ended meanwhile (a cancel won the race) is left as it is."""
    reason = "its worker shut down before it finished; requeued"
    ctx.recorder.log(reason, level="warning")
    checkpoint = {
        **(ctx.execution.checkpoint or {}),
        "usage_keys": [[agent, model, day.isoformat()] for agent, model, day in ctx.recorder._counted_usage_keys],
    }
    with transaction.atomic():
        ctx.recorder.flush()
        if execution_transition(
            execution_id=ctx.execution.pk,
            to=S.PENDING,
            reason=reason,
            worker="",
            checkpoint=checkpoint,
            only_from={S.PREPARING, S.RUNNING},
        ):
            transaction.on_commit(partial_enqueue(ctx.execution.pk, ctx.execution.priority))
            return S.PENDING
    return Execution.objects.filter(pk=ctx.execution.pk).values_list("status", flat=True).first() or S.PENDING


def _end(ctx: RunContext, to: str, reason: str, info: dict | None = None) -> None:
    fields: dict[str, Any] = {"error": reason if to == S.FAILED else ""}
    if info:
        fields["result"] = {"error_info": {k: v for k, v in info.items() if v is not None}}
    try:
        with transaction.atomic():  # the last batch and the end in one transaction, the event last
            ctx.recorder.flush()
            execution_transition(execution_id=ctx.execution.pk, to=to, reason=reason, **fields)
        return
    except Exception:
        logger.exception("final flush or end of %s failed; ending it without its last batch", ctx.execution.pk)
    execution_transition(execution_id=ctx.execution.pk, to=to, reason=reason, **fields)


def _record_agent_stats(execution: Execution, seconds: float, error: str) -> None:
    record_agent_runs([(execution, seconds, error)])
