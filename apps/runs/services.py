"""Writes of the run engine: create, enqueue, cancel, retry and replay executions.

Status changes, claims and the wait for a run's end are ``apps.runs.transitions``' (named here
too, for the apps that call the engine's services): ``execution_transition`` is the only code that
changes ``Execution.status`` (DESIGN §7, house style 4).
"""

from __future__ import annotations

import contextvars
import logging
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from apps.audit.services import audit_record, audit_record_many, audit_row, snapshot
from apps.events.services import publish_many
from apps.quotas.services import quota_consume_for_execution, quota_consume_for_executions
from apps.runs.checkpoints import ReplayError, copy_steps, default_max_attempts, replay_plan
from apps.runs.inflight import signal_cancel
from apps.runs.models import TERMINAL_STATUSES, Execution, ExecutionEvent, ExecutionKind, ExecutionStatus
from apps.runs.registry import has_service, service
from apps.runs.tasks import run_execution
from apps.runs.transitions import (
    ALLOWED_FROM,
    CLAIM_LOCK_NAMESPACE,
    execution_claim,
    execution_transition,
    execution_transition_many,
    terminal_hooks_batched,
    wait_for_terminal,
)
from kai_platform.api.errors import Conflict
from kai_platform.celery import app
from kai_platform.db.statements import execute_together, insert_statement

__all__ = [
    "ALLOWED_FROM",
    "CLAIM_LOCK_NAMESPACE",
    "PRIORITY_NAMES",
    "batch_memo",
    "celery_priority",
    "execution_batch",
    "execution_batch_write",
    "execution_cancel",
    "execution_claim",
    "execution_create",
    "execution_enqueue",
    "execution_enqueue_many",
    "execution_replay",
    "execution_retry",
    "execution_transition",
    "execution_transition_many",
    "runs_queue",
    "terminal_hooks_batched",
    "wait_for_terminal",
]

logger = logging.getLogger(__name__)

S = ExecutionStatus

PRIORITY_NAMES = {"low": 2, "normal": 5, "high": 8}


def runs_queue() -> str:
    return f"{settings.KAI_REDIS_PREFIX}.runs"


def _actor_or_none(actor):
    return actor if getattr(actor, "pk", None) and getattr(actor, "is_authenticated", False) else None


# --- executions --------------------------------------------------------------------------------


def celery_priority(priority: int) -> int:
    """Execution priority 0 (lowest) … 9 (highest) → the Redis transport's 0 (first) … 9 (last)."""
    return max(0, min(9, 9 - int(priority)))


def execution_enqueue(*, execution_id, priority: int = 5, countdown: float | None = None, producer=None) -> None:
    options = {"queue": runs_queue(), "priority": celery_priority(priority)}
    if countdown:
        options["countdown"] = countdown
    if producer is not None:
        options["producer"] = producer
    run_execution.apply_async(args=[str(execution_id)], **options)


def execution_enqueue_many(*, runs: list[tuple]) -> None:
    """Queue ``[(execution_id, priority), …]`` with ONE producer (one broker connection and channel)
    whose publishes are pipelined (kombu's ``Producer.batch``: one Redis round trip per 1,000
    commands instead of one per message). A message lost here is re-queued by the reaper
    (``requeue_forgotten``), as for any PENDING run whose message never arrived."""
    with app.producer_or_acquire() as producer, producer.batch():
        for execution_id, priority in runs:
            execution_enqueue(execution_id=execution_id, priority=priority, producer=producer)


def _pending_event(execution: Execution, actor) -> dict:
    """``publish`` arguments of a new run's ``execution.pending``."""
    return {
        "organization": execution.organization_id,
        "type": "execution.pending",
        "data": {
            "execution_id": str(execution.pk),
            "kind": execution.kind,
            "from": "",
            "to": S.PENDING,
            "status": S.PENDING,
            "reason": "created",
            "run_name": execution.run_name,
            "agent_id": str(execution.agent_id) if execution.agent_id else None,
        },
        "agent": execution.agent_id,
        "execution": execution,
        "actor": actor,
        "component": "runs",
    }


_CREATE_SNAPSHOT = [
    "id",
    "kind",
    "run_name",
    "crew",
    "orchestration",
    "agent",
    "parent",
    "model",
    "priority",
    "dedupe_key",
]


def execution_create(
    *,
    organization,
    actor,
    kind: str,
    run_name: str = "",
    crew=None,
    orchestration=None,
    agent=None,
    parent=None,
    inputs: dict | None = None,
    definition: dict | None = None,
    params: dict | None = None,
    model: str = "",
    priority: int = 5,
    max_attempts: int | None = None,
    stream_id: str = "",
    dedupe_key: str | None = None,
    enqueue: bool = True,
    execution_id=None,
    also_publish=None,
    also_write=None,
    durable: bool = True,
) -> Execution:
    """Create a PENDING run and queue it once the transaction commits. With ``dedupe_key``, a second
    call with the same key returns the first run instead of creating another. ``execution_id`` gives
    the new run its id (the caller may have written it elsewhere in the same transaction); the
    caller's events (``also_publish``) and statements (``also_write``) are written with the run, and
    ``durable=False`` skips its commit's WAL flush wait: see ``_write_plain``. ``max_attempts``
    defaults by kind (``apps.runs.checkpoints.default_max_attempts``: 3 for kinds that checkpoint).

    Inside ``execution_batch`` a plain create (no dedupe key, stream id, given id, extra events,
    and queued) is checked and built here but written by the batch, with the batch's other runs."""
    extra = also_publish or also_write  # the caller's own events or statements: written with the run, never batched
    batch = _batch_taking(organization, plain=enqueue and not (dedupe_key or stream_id or execution_id or extra))
    if parent is None and has_service("runs_admission") and not (batch is not None and batch.admitted):
        service("runs_admission")()  # maintenance refuses new runs; a run's steps go on
    execution = Execution(
        **({"id": execution_id} if execution_id else {}),
        **{"crew": crew, "orchestration": orchestration, "agent": agent, "parent": parent, "stream_id": stream_id},
        organization_id=getattr(organization, "pk", organization),
        created_by=_actor_or_none(actor),
        kind=ExecutionKind(kind),
        run_name=run_name[:300],
        inputs=inputs or {},
        definition=definition or {},
        params=params or {},
        model=model or "",
        priority=max(0, min(9, int(priority))),
        max_attempts=max(1, int(default_max_attempts(kind) if max_attempts is None else max_attempts)),
        dedupe_key=dedupe_key or None,
    )
    if batch is not None:
        batch.admitted = batch.admitted or parent is None
        batch.runs.append((execution, actor))
        return execution
    return _write_one(
        execution, actor, dedupe_key, stream_id, also_publish, also_write, enqueue=enqueue, durable=durable
    )


def _batch_taking(organization, *, plain: bool):
    """The open ``execution_batch`` that writes a plain create of ``organization``'s, if any."""
    batch = _batch.get()
    if batch is not None and plain and getattr(organization, "pk", organization) == batch.organization_id:
        return batch
    return None


def _write_one(
    execution: Execution, actor, dedupe_key, stream_id, also_publish, also_write, *, enqueue: bool, durable: bool
) -> Execution:
    """Write one new run (counted against the plan's quota), its history and audit rows and its
    ``execution.pending``, queued on commit; the run that already holds ``dedupe_key`` instead."""
    if not (dedupe_key or stream_id):
        return _write_plain(
            execution, actor=actor, also_publish=also_publish, also_write=also_write, enqueue=enqueue, durable=durable
        )
    with transaction.atomic():
        existing = _insert(execution, dedupe_key=dedupe_key, stream_id=stream_id)
        if existing is not None:
            return existing
        # plan quotas: over quota raises 429 GENERAL_002 and rolls this run back
        quota_consume_for_execution(execution=execution)
        _created_history(execution).save(force_insert=True)
        audit_record(**_created_audit(execution, actor))
        publish_many([_pending_event(execution, actor), *(also_publish(execution) if also_publish else [])])
        if also_write is not None:
            execute_together(also_write(execution))
        if enqueue:
            transaction.on_commit(partial(execution_enqueue, execution_id=execution.pk, priority=execution.priority))
    return execution


#: the first statement of a transaction whose commit need not wait for its WAL flush
NO_FLUSH_WAIT = "SET LOCAL synchronous_commit = off;\n"


def _write_plain(
    execution: Execution, *, actor, also_publish, enqueue: bool, also_write=None, durable: bool = True
) -> Execution:
    """Counted first (a refusal writes nothing), then the run, its history and audit rows in ONE
    statement, sent with its events' insert in one round trip: outside a transaction that round
    trip is the transaction (``publish_many``'s ``first``), commit included.

    ``also_publish(execution) -> [publish kwargs]``: the caller's events, in the statement of
    ``execution.pending`` (after it; the organization's event lock is taken once).
    ``also_write(execution) -> [(sql, params)]``: the caller's statements (no result rows), sent
    after the run's, in its transaction and round trip. ``durable=False``: for a caller that answers
    only after the run's end (a synchronous call), a commit that does not wait for the WAL flush —
    the end's commit, later in the WAL, makes it durable, so whatever the caller answers is; a
    database crash before that loses the run with its rows and events, never a part of them
    (outside a caller's transaction only)."""
    quota_consume_for_execution(execution=execution)
    events = [_pending_event(execution, actor), *(also_publish(execution) if also_publish else [])]
    statements = [_insert_together_statement(execution, actor), *(also_write(execution) if also_write else [])]
    sql = ";\n".join(statement for statement, _ in statements)
    params = [param for _, statement_params in statements for param in statement_params]
    if not durable and not connection.in_atomic_block:
        sql = NO_FLUSH_WAIT + sql
    with transaction.atomic() if connection.in_atomic_block else nullcontext():
        publish_many(events, first=(sql, params))
        execution._state.adding = False
        execution._state.db = connection.alias
        if enqueue:  # at once when there was no transaction around: the round trip above committed
            transaction.on_commit(partial(execution_enqueue, execution_id=execution.pk, priority=execution.priority))
    return execution


def _insert(execution: Execution, *, dedupe_key, stream_id) -> Execution | None:
    """INSERT the new row; returns the run that already holds ``dedupe_key`` instead, if one does."""
    if not dedupe_key and not stream_id:
        execution.save(force_insert=True)
        return None
    try:
        with transaction.atomic():
            execution.save(force_insert=True)
    except IntegrityError:
        if dedupe_key:
            existing = Execution.objects.filter(dedupe_key=dedupe_key).first()
            if existing is not None:
                return existing
        elif Execution.objects.filter(stream_id=stream_id).exists():
            raise Conflict(
                f"stream_id {stream_id!r} is already used.", errors=[{"field": "stream_id", "message": "already used"}]
            )
        raise
    return None


def _insert_together_statement(execution: Execution, actor) -> tuple[str, list]:
    """The INSERT of the new run, its PENDING history row and its audit row as one statement
    (data-modifying CTEs; the history row's foreign key is checked at the end of the statement,
    when the run exists)."""
    statements = [_compiled(execution)]  # first: sets the run's created_at, which its history row repeats
    statements.append(_compiled(_created_history(execution)))
    audit = audit_row(**_created_audit(execution, actor))
    if audit is not None:
        statements.append(_compiled(audit))
    *ctes, (sql, params) = statements
    sql = "WITH " + ", ".join(f"kai_row{index} AS ({cte})" for index, (cte, _) in enumerate(ctes)) + " " + sql
    return sql, [param for _, cte_params in ctes for param in cte_params] + params


def _created_history(execution: Execution) -> ExecutionEvent:
    """A new run's first history row (→ PENDING), not saved."""
    return ExecutionEvent(
        organization_id=execution.organization_id,
        execution=execution,
        from_status="",
        to_status=S.PENDING,
        reason="created",
        at=execution.created_at,
    )


def _created_audit(execution: Execution, actor) -> dict:
    """The keywords of a new run's audit row (``audit_record`` / ``audit_row``)."""
    return {
        "organization": execution.organization_id,
        "actor": actor,
        "action": "execution.create",
        "instance": execution,
        "after": snapshot(execution, _CREATE_SNAPSHOT),
    }


def _compiled(obj) -> tuple[str, list]:
    """The INSERT Django would send for ``obj`` (defaults and ``auto_now_add`` applied to ``obj``)."""
    return insert_statement(obj)


# --- many runs at once -------------------------------------------------------------------------


@dataclass
class RunBatch:
    """The runs ``execution_create`` built inside ``execution_batch``, in call order, with their actors."""

    organization_id: object
    runs: list = field(default_factory=list)
    admitted: bool = False  # the admission check (maintenance) passed once for the batch
    memo: dict = field(default_factory=dict)


_batch: contextvars.ContextVar[RunBatch | None] = contextvars.ContextVar("kai_run_batch", default=None)


@contextmanager
def execution_batch(*, organization):
    """Collect the runs created inside (of ``organization``) instead of writing each; the caller
    then writes them all with ``execution_batch_write`` in the same transaction. Checks that need
    no write (admission, and whatever ``batch_memo`` caches) run once per batch."""
    batch = RunBatch(organization_id=getattr(organization, "pk", organization))
    token = _batch.set(batch)
    try:
        yield batch
    finally:
        _batch.reset(token)


def batch_memo(key, compute):
    """``compute()``, once per open ``execution_batch`` for ``key`` (a read the batch's items
    share: an agent's row, its budgets); outside a batch, every time."""
    batch = _batch.get()
    if batch is None:
        return compute()
    if key not in batch.memo:
        batch.memo[key] = compute()
    return batch.memo[key]


def execution_batch_write(*, batch: RunBatch) -> dict[int, Exception]:
    """Write the batch's runs as ``execution_create`` writes one, with one statement per kind of row:
    the runs, their history rows, their audit rows, their ``execution.pending`` events; count them
    against the plan's quota in one step, and queue them all once the transaction commits (one
    broker connection). Returns ``{position in batch.runs: error}`` for the runs the quota
    refused (429, as ``POST /executions`` would answer them); those are not written."""
    if not batch.runs:
        return {}
    with transaction.atomic(savepoint=False):
        refused = quota_consume_for_executions(executions=[execution for execution, _ in batch.runs])
        runs = [(execution, actor) for index, (execution, actor) in enumerate(batch.runs) if index not in refused]
        if not runs:
            return refused
        Execution.objects.bulk_create([execution for execution, _ in runs])
        ExecutionEvent.objects.bulk_create([_created_history(execution) for execution, _ in runs])
        audit_record_many([_created_audit(execution, actor) for execution, actor in runs])
        publish_many([_pending_event(execution, actor) for execution, actor in runs])
        transaction.on_commit(
            partial(execution_enqueue_many, runs=[(execution.pk, execution.priority) for execution, _ in runs])
        )
    return refused


def execution_cancel(*, execution: Execution, actor, reason: str = "cancelled by user") -> Execution:
    """Cancel a run. A PENDING run is CANCELLED at once; a PREPARING/RUNNING one is flagged and its
    runner is told at once (its worker's Redis list), stops before its next token, records what it
    spent, then ends CANCELLED."""
    if execution.is_terminal:
        raise Conflict(
            f"The execution already ended ({execution.status}).",
            errors=[{"field": "status", "message": f"is {execution.status}"}],
        )
    with transaction.atomic():
        changed = (
            Execution.objects.filter(pk=execution.pk)
            .exclude(status__in=TERMINAL_STATUSES)
            .update(cancel_requested=True, updated_at=timezone.now())
        )
        if not changed:
            execution.refresh_from_db()
            raise Conflict(
                f"The execution already ended ({execution.status}).",
                errors=[{"field": "status", "message": f"is {execution.status}"}],
            )
        audit_record(
            organization=execution.organization,
            actor=actor,
            action="execution.cancel",
            instance=execution,
            after={"cancel_requested": True, "reason": reason},
        )
        # Only a run no worker holds ends here (queued, or parked waiting for approval); a claimed
        # run's runner sees the flag, stops spending, records what it spent and ends CANCELLED itself.
        execution_transition(
            execution_id=execution.pk, to=S.CANCELLED, reason=reason, only_from={S.PENDING, S.WAITING_FOR_APPROVAL}
        )
    execution.refresh_from_db()
    if execution.status in (S.PREPARING, S.RUNNING):
        signal_cancel(execution_id=execution.pk, worker=execution.worker)  # its worker stops it now
    return execution


def execution_retry(*, execution: Execution, actor) -> Execution:
    """Run an ended run again: a new run with the same frozen definition, inputs and parameters
    (the original stays as it was). Workflow steps are retried by their workflow, not here."""
    if not execution.is_terminal:
        raise Conflict(
            f"The execution has not ended ({execution.status}).",
            errors=[{"field": "status", "message": f"is {execution.status}"}],
        )
    if execution.kind == ExecutionKind.WORKFLOW_STEP:
        raise Conflict(
            "A workflow step is retried by its workflow run.", errors=[{"field": "kind", "message": "is workflow_step"}]
        )
    return execution_create(
        organization=execution.organization,
        actor=actor,
        kind=execution.kind,
        run_name=f"{execution.run_name} (retry)" if execution.run_name else "retry",
        crew=execution.crew,
        orchestration=execution.orchestration,
        agent=execution.agent,
        inputs=execution.inputs,
        definition=execution.definition,
        params=execution.params,
        model=execution.model,
        priority=execution.priority,
        max_attempts=execution.max_attempts,
    )


def execution_replay(*, execution: Execution, actor, from_step: str) -> Execution:
    """A new run of an ended run's definition that reuses the outputs of the steps it started
    before ``from_step`` (its step log) and runs ``from_step`` and what follows again; the new run
    names its source in ``replayed_from``. Raises ValidationError naming the valid steps."""

    try:
        reused = replay_plan(execution, from_step)
    except ReplayError as exc:
        if exc.conflict:
            raise Conflict(str(exc), errors=[{"field": exc.field, "message": str(exc)}])
        raise ValidationError({exc.field: [str(exc)]})
    with transaction.atomic():
        replay = execution_create(
            organization=execution.organization,
            actor=actor,
            kind=execution.kind,
            run_name=f"{execution.run_name} (replay from {from_step})"[:300],
            crew=execution.crew,
            orchestration=execution.orchestration,
            agent=execution.agent,
            inputs=execution.inputs,
            definition=execution.definition,
            params=execution.params,
            model=execution.model,
            priority=execution.priority,
            max_attempts=execution.max_attempts,
            enqueue=False,
        )
        Execution.objects.filter(pk=replay.pk).update(replayed_from=execution)
        replay.replayed_from = execution
        copy_steps(reused, to=replay)
        transaction.on_commit(partial(execution_enqueue, execution_id=replay.pk, priority=replay.priority))
    return replay
