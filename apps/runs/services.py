"""Writes of the run engine: create, enqueue, claim, cancel, retry and wait for executions.

``execution_transition`` is the only code that changes ``Execution.status`` (DESIGN §7, house
style 4): a locked, conditional update that writes an ``ExecutionEvent`` and publishes
``execution.<status>`` in the same transaction.
"""

from __future__ import annotations

import contextvars
import logging
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models.sql import InsertQuery
from django.utils import timezone
from django_redis import get_redis_connection
from rest_framework.exceptions import ValidationError

from apps.audit.services import audit_record, audit_record_many, audit_row, snapshot
from apps.events.services import event_insert_ctes, listeners_want, publish_many, published
from apps.quotas.services import quota_consume_for_execution, quota_consume_for_executions
from apps.runs.checkpoints import ReplayError, copy_steps, default_max_attempts, replay_plan
from apps.runs.models import TERMINAL_STATUSES, Execution, ExecutionEvent, ExecutionKind, ExecutionStatus
from apps.runs.registry import has_service, service, terminal_hooks
from apps.runs.tasks import run_execution
from kai_platform.api.errors import Conflict
from kai_platform.celery import app
from kai_platform.tenancy.locks import organization_lock_key

logger = logging.getLogger(__name__)

S = ExecutionStatus

#: the statuses each status may be entered from
ALLOWED_FROM: dict[str, frozenset] = {
    S.PENDING: frozenset(
        {
            S.PREPARING,
            S.RUNNING,  # requeued after its worker was lost
            S.WAITING_FOR_APPROVAL,
        }
    ),  # approved: queued again to resume
    S.PREPARING: frozenset({S.PENDING}),
    S.RUNNING: frozenset(
        {
            S.PREPARING,
            # answered and resumed in place, no worker claims it: a workflow run and its
            # approval step (apps.workflows); crews resume through PENDING instead
            S.WAITING_FOR_APPROVAL,
        }
    ),
    S.COMPLETED: frozenset({S.RUNNING}),
    S.FAILED: frozenset({S.PENDING, S.PREPARING, S.RUNNING, S.WAITING_FOR_APPROVAL}),
    S.CANCELLED: frozenset({S.PENDING, S.PREPARING, S.RUNNING, S.WAITING_FOR_APPROVAL}),
    # parked in the database by its runner (apps.approvals); no worker holds it while it waits
    S.WAITING_FOR_APPROVAL: frozenset({S.RUNNING}),
}

PRIORITY_NAMES = {"low": 2, "normal": 5, "high": 8}


def runs_queue() -> str:
    return f"{settings.KAI_REDIS_PREFIX}.runs"


def _actor_or_none(actor):
    return actor if getattr(actor, "pk", None) and getattr(actor, "is_authenticated", False) else None


# --- the transition service --------------------------------------------------------------------

_TRANSITION_SQL = """
WITH {running}old AS (
    SELECT id, status FROM crews_execution WHERE id = %s AND status = ANY(%s){extra} FOR UPDATE
), upd AS (
    UPDATE crews_execution e SET {sets} FROM old WHERE e.id = old.id
    RETURNING old.status AS from_status, e.organization_id, e.kind, e.agent_id, e.parent_id
), steps (ord, from_status, to_status, reason) AS (
    VALUES {steps}
), history AS (
    INSERT INTO crews_executionevent (organization_id, execution_id, from_status, to_status, reason, at)
    SELECT upd.organization_id, %s, COALESCE(steps.from_status, upd.from_status), steps.to_status, steps.reason, %s
    FROM upd, steps ORDER BY steps.ord
), {events}
SELECT {running_n}, upd.from_status, upd.organization_id, upd.kind, upd.agent_id, upd.parent_id,
       kai_event.id, kai_event.created_at, kai_event.type
FROM {running_from} LEFT JOIN kai_event ON true ORDER BY kai_event.id
"""

_STEP_EVENT_VALUES = {
    "type": "'execution.' || lower(steps.to_status)",
    "severity": "CASE WHEN steps.to_status = 'FAILED' THEN 'error' ELSE 'info' END",
    "component": "'runs'",
    "agent_id": "upd.agent_id",
    "execution_id": "%s::uuid",
    # the same keys, in the same order, as ``_event_data``
    "data": (
        "jsonb_build_object('execution_id', %s::text, 'kind', upd.kind, "
        "'from', COALESCE(steps.from_status, upd.from_status), 'to', steps.to_status, "
        "'status', steps.to_status, 'reason', steps.reason, 'agent_id', upd.agent_id::text) || "
        "CASE WHEN upd.parent_id IS NULL THEN '{}'::jsonb "
        "ELSE jsonb_build_object('parent_id', upd.parent_id::text) END"
    ),
    "created_at": "%s",
}


def _event_data(execution_id, kind, from_status, to, reason, agent_id, parent_id) -> dict:
    data = {
        "execution_id": str(execution_id),
        "kind": kind,
        "from": from_status,
        "to": str(to),
        "status": str(to),
        "reason": reason,
        "agent_id": str(agent_id) if agent_id else None,
    }
    if parent_id:
        data["parent_id"] = str(parent_id)
    return data


def _transition(
    *,
    execution_id,
    path: list[tuple[str, str]],
    allowed,
    unless_cancel_requested: bool = False,
    cap: tuple | None = None,
    fields: dict,
) -> tuple[bool, int | None]:
    """The one statement of a status change: lock the row (``FOR UPDATE``, re-checked after any
    wait), update it to the last status of ``path`` (``[(status, reason), …]``), write one
    ``ExecutionEvent`` and one ``execution.<status>`` event per step (ids in path order), then
    publish. ``cap`` = ``(organization_id, limit)``: the organization's concurrency lock is taken
    first (an earlier statement of the same round trip, so the count below sees every claim
    committed before it) and the row moves only while fewer than ``limit`` top-level runs of the
    organization are PREPARING/RUNNING. Returns (changed, that count or None)."""
    to = path[-1][0]
    now = timezone.now()
    updates = {**fields, "status": to, "updated_at": now}
    if to == S.RUNNING:
        updates.setdefault("started_at", now)
        updates.setdefault("heartbeat_at", now)
    if to in TERMINAL_STATUSES:
        updates.setdefault("completed_at", now)
    if to == S.PENDING:
        updates.setdefault("heartbeat_at", None)
    sets, set_params = [], []
    for name, value in updates.items():
        model_field = Execution._meta.get_field(name)
        sets.append(f'"{model_field.column}" = %s')
        set_params.append(model_field.get_db_prep_save(value, connection))
    extra = " AND NOT cancel_requested" if unless_cancel_requested else ""
    running, running_n, running_from, params = "", "NULL::bigint", "upd", []
    prefix, prefix_params = "", []
    if cap is not None:
        organization_id, limit = cap
        prefix = "SELECT pg_advisory_xact_lock(%s, %s);\n"
        prefix_params = [CLAIM_LOCK_NAMESPACE, organization_lock_key(organization_id)]
        running = (
            "running AS (SELECT count(*) AS n FROM crews_execution WHERE organization_id = %s "
            "AND status IN ('PREPARING', 'RUNNING') AND parent_id IS NULL), "
        )
        params.append(organization_id)
        extra += " AND (SELECT n FROM running) < %s"
        running_n, running_from = "running.n", "running LEFT JOIN upd ON true"
    steps_sql, step_params = [], []
    for index, (status, reason) in enumerate(path):
        steps_sql.append(f"({index}, {'%s' if index else 'NULL'}::text, %s::text, %s::text)")
        step_params += ([str(path[index - 1][0])] if index else []) + [str(status), reason[:4000]]
    sql = _TRANSITION_SQL.format(
        running=running,
        extra=extra,
        sets=", ".join(sets),
        steps=", ".join(steps_sql),
        events=event_insert_ctes(source="upd, steps", values=_STEP_EVENT_VALUES, order_by="steps.ord"),
        running_n=running_n,
        running_from=running_from,
    )
    params += [execution_id, [str(status) for status in allowed]]
    if cap is not None:
        params.append(cap[1])
    params += [*set_params, *step_params, execution_id, now, execution_id, execution_id, now]
    types = {f"execution.{status.lower()}" for status, _ in path}
    # Outside any transaction, and with no listener for these events, the statement(s) run in
    # autocommit: one round trip is one transaction, committed by the server as soon as it ran, so
    # the organization's locks are never held while this thread waits for its turn to run Python.
    # Otherwise the listeners run inside the transaction, before it commits.
    own = connection.in_atomic_block or listeners_want(types)
    with transaction.atomic(savepoint=False) if own else nullcontext():
        with connection.cursor() as cursor:
            cursor.execute(prefix + sql, prefix_params + params)
            if prefix:
                cursor.nextset()
            rows = cursor.fetchall()
        if not rows or rows[0][1] is None:
            return False, rows[0][0] if rows else None
        count, from_status, organization_id, kind, agent_id, parent_id = rows[0][:6]
        events = [(pk, created_at) for *_, pk, created_at, _type in rows]
        if len(events) != len(path):
            raise RuntimeError(f"transition of {execution_id} published {len(events)} events for {len(path)} steps")
        previous = from_status
        for (status, reason), (pk, created_at) in zip(path, events):
            published(
                pk=pk,
                created_at=created_at,
                organization=organization_id,
                type=f"execution.{status.lower()}",
                data=_event_data(execution_id, kind, previous, status, reason, agent_id, parent_id),
                agent=agent_id,
                execution=execution_id,
                severity="error" if status == S.FAILED else "info",
                component="runs",
            )
            previous = status
        if to in TERMINAL_STATUSES:
            on_commit_first(partial(_signal_finished, str(execution_id), str(to)))
            for hook in terminal_hooks(kind):
                transaction.on_commit(
                    partial(
                        hook,
                        execution_id=str(execution_id),
                        status=str(to),
                        kind=kind,
                        organization_id=organization_id,
                        agent_id=agent_id,
                        parent_id=parent_id,
                    ),
                    robust=True,
                )
    return True, count


def execution_transition(
    *, execution_id, to: str, reason: str = "", only_from=None, unless_cancel_requested: bool = False, **fields
) -> bool:
    """Move an execution to ``to`` if its current status allows it; ``fields`` are written in the
    same UPDATE. Returns False (and changes nothing) when the execution is not in a status ``to``
    may be entered from — a second worker, a late cancel or a reaped run lose the race cleanly.
    ``only_from`` narrows the allowed statuses further (never widens them);
    ``unless_cancel_requested`` also refuses a run whose cancel was requested.

    One statement locks the row (``FOR UPDATE``, re-checked after any wait), updates it, writes
    the ``ExecutionEvent`` and inserts the ``execution.<status>`` event (under the organization's
    event lock); the event's listeners run and its delivery is queued in the same transaction."""
    to = ExecutionStatus(to)
    if "status" in fields:
        raise ValueError("pass the new status as `to`")
    allowed = ALLOWED_FROM[to] if only_from is None else ALLOWED_FROM[to] & frozenset(only_from)
    if not allowed:
        return False
    changed, _ = _transition(
        execution_id=execution_id,
        path=[(to, reason)],
        allowed=allowed,
        unless_cancel_requested=unless_cancel_requested,
        fields=fields,
    )
    return changed


#: advisory lock namespace of the per-organization concurrency cap (claims)
CLAIM_LOCK_NAMESPACE = 0x6B43


def execution_claim(
    *, execution_id, worker: str, attempts: int, start: bool = True, cap: tuple | None = None
) -> tuple[str, int | None]:
    """PENDING → PREPARING (→ RUNNING with ``start``) for the worker that will run it: ONE
    statement, both steps recorded and published in order (``execution.preparing`` then
    ``execution.running``, as if the run had been PREPARING for no time). A run whose cancel was
    requested is not claimed. ``cap`` = ``(organization_id, limit)``: taken only while fewer than
    ``limit`` top-level runs of the organization are PREPARING/RUNNING, under the organization's
    claim lock. Returns ("claimed" | "over_cap" | "lost", the count it saw or None)."""
    reason = f"claimed by {worker}"
    path = [(S.PREPARING, reason)] + ([(S.RUNNING, "started")] if start else [])
    changed, running = _transition(
        execution_id=execution_id,
        path=path,
        allowed={S.PENDING},
        unless_cancel_requested=True,
        cap=cap,
        fields={"worker": worker[:200], "attempts": attempts, "heartbeat_at": timezone.now()},
    )
    if changed:
        return "claimed", running
    if cap is not None and running is not None and running >= cap[1]:
        return "over_cap", running
    return "lost", running


def _done_key(execution_id: str) -> str:
    return f"{settings.KAI_REDIS_PREFIX}:runs:done:{execution_id}"


def _signal_finished(execution_id: str, status: str) -> None:
    """Wake callers blocked in ``wait_for_terminal`` (a Redis list per run, short-lived)."""
    try:
        redis = get_redis_connection("default")
        pipe = redis.pipeline()
        pipe.lpush(_done_key(execution_id), status)
        pipe.expire(_done_key(execution_id), 120)
        pipe.execute()
    except Exception:  # waiters fall back to polling the row
        logger.warning("could not signal the end of execution %s", execution_id, exc_info=True)


def on_commit_first(func) -> None:
    """Run ``func`` when the transaction commits, before the callbacks registered earlier in it
    (a synchronous caller is woken before the run's shared counters and hooks are written)."""
    transaction.on_commit(func, robust=True)
    hooks = connection.run_on_commit
    if connection.in_atomic_block and hooks and hooks[-1][1] is func:
        hooks.insert(0, hooks.pop())


def wait_for_terminal(*, execution_id, timeout: float) -> Execution:
    """Block until the execution ends or ``timeout`` passes; returns the row as it is then.

    The caller holds no DB connection while it waits: it waits on the run's Redis list, which the
    end of the run signals (``_signal_finished``; a signal pushed before the wait began is still
    there), and reads the row once woken, or every second should the signal be lost."""
    deadline = time.monotonic() + max(0.0, timeout)
    key = _done_key(str(execution_id))
    while True:
        if not connection.in_atomic_block:
            connection.close()
        remaining = deadline - time.monotonic()
        if remaining > 0:
            try:  # the signal goes back to the list's head: every waiter of the run sees it
                get_redis_connection("default").blmove(key, key, min(1.0, remaining), "RIGHT", "LEFT")
            except Exception:
                time.sleep(min(0.5, max(0.05, remaining)))
        execution = Execution.objects.get(pk=execution_id)
        if execution.is_terminal or time.monotonic() >= deadline:
            return execution


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
) -> Execution:
    """Create a PENDING run and queue it once the transaction commits. With ``dedupe_key``, a second
    call with the same key returns the first run instead of creating another.

    ``execution_id`` gives the new run its id (the caller may have written it elsewhere in the
    same transaction); ``also_publish(execution) -> [publish kwargs]`` returns events of the caller
    published in the same statement as ``execution.pending`` (after it): the organization's event
    lock is then taken once, at the end of the caller's work. ``max_attempts`` defaults by kind
    (``apps.runs.checkpoints.default_max_attempts``: 3 for kinds that checkpoint their steps).

    Inside ``execution_batch`` a plain create (no dedupe key, stream id, given id, extra events,
    and queued) is checked and built here but written by the batch, with the batch's other runs."""
    ExecutionKind(kind)
    if max_attempts is None:
        max_attempts = default_max_attempts(kind)
    batch = _batch.get()
    deferred = (
        batch is not None
        and enqueue
        and not (dedupe_key or stream_id or execution_id or also_publish)
        and getattr(organization, "pk", organization) == batch.organization_id
    )
    if parent is None and has_service("runs_admission") and not (deferred and batch.admitted):
        service("runs_admission")()  # maintenance refuses new runs; a run's steps go on
    org_id = getattr(organization, "pk", organization)
    execution = Execution(
        **({"id": execution_id} if execution_id else {}),
        organization_id=org_id,
        created_by=_actor_or_none(actor),
        kind=kind,
        run_name=run_name[:300],
        crew=crew,
        orchestration=orchestration,
        agent=agent,
        parent=parent,
        inputs=inputs or {},
        definition=definition or {},
        params=params or {},
        model=model or "",
        priority=max(0, min(9, int(priority))),
        max_attempts=max(1, int(max_attempts)),
        stream_id=stream_id,
        dedupe_key=dedupe_key or None,
    )
    if deferred:
        batch.admitted = batch.admitted or parent is None
        batch.runs.append((execution, actor))
        return execution
    with transaction.atomic():
        if dedupe_key or stream_id:
            existing = _insert(execution, dedupe_key=dedupe_key, stream_id=stream_id)
            if existing is not None:
                return existing
            # plan quotas: over quota raises 429 GENERAL_002 and rolls this run back
            quota_consume_for_execution(execution=execution)
            ExecutionEvent.objects.create(
                organization_id=org_id,
                execution=execution,
                from_status="",
                to_status=S.PENDING,
                reason="created",
                at=execution.created_at,
            )
            audit_record(
                organization=organization,
                actor=actor,
                action="execution.create",
                instance=execution,
                after=snapshot(execution, _CREATE_SNAPSHOT),
            )
        else:  # counted first (a refusal writes nothing), then the run, its history and audit rows in ONE statement
            quota_consume_for_execution(execution=execution)
            _insert_together(execution, actor)
        publish_many([_pending_event(execution, actor), *(also_publish(execution) if also_publish else [])])
        if enqueue:
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


def _insert_together(execution: Execution, actor) -> None:
    """INSERT the new run, its PENDING history row and its audit row in one statement (data-modifying
    CTEs; the history row's foreign key is checked at the end of the statement, when the run exists)."""
    statements = [_compiled(execution)]  # first: sets the run's created_at, which its history row repeats
    statements.append(
        _compiled(
            ExecutionEvent(
                organization_id=execution.organization_id,
                execution=execution,
                from_status="",
                to_status=S.PENDING,
                reason="created",
                at=execution.created_at,
            )
        )
    )
    audit = audit_row(
        organization=execution.organization_id,
        actor=actor,
        action="execution.create",
        instance=execution,
        after=snapshot(execution, _CREATE_SNAPSHOT),
    )
    if audit is not None:
        statements.append(_compiled(audit))
    *ctes, (sql, params) = statements
    sql = "WITH " + ", ".join(f"kai_row{index} AS ({cte})" for index, (cte, _) in enumerate(ctes)) + " " + sql
    with connection.cursor() as cursor:
        cursor.execute(sql, [param for _, cte_params in ctes for param in cte_params] + params)
    execution._state.adding = False
    execution._state.db = connection.alias


def _compiled(obj) -> tuple[str, list]:
    """The INSERT Django would send for ``obj`` (defaults and ``auto_now_add`` applied to ``obj``)."""
    meta = type(obj)._meta
    fields = [f for f in meta.local_concrete_fields if f is not meta.auto_field]
    query = InsertQuery(type(obj))
    query.insert_values(fields, [obj])
    [(sql, params)] = query.get_compiler(connection=connection).as_sql()
    return sql, list(params)


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
        ExecutionEvent.objects.bulk_create(
            [
                ExecutionEvent(
                    organization_id=execution.organization_id,
                    execution=execution,
                    from_status="",
                    to_status=S.PENDING,
                    reason="created",
                    at=execution.created_at,
                )
                for execution, _ in runs
            ]
        )
        audit_record_many(
            [
                {
                    "organization": execution.organization_id,
                    "actor": actor,
                    "action": "execution.create",
                    "instance": execution,
                    "after": snapshot(execution, _CREATE_SNAPSHOT),
                }
                for execution, actor in runs
            ]
        )
        publish_many([_pending_event(execution, actor) for execution, actor in runs])
        transaction.on_commit(
            partial(execution_enqueue_many, runs=[(execution.pk, execution.priority) for execution, _ in runs])
        )
    return refused


def execution_cancel(*, execution: Execution, actor, reason: str = "cancelled by user") -> Execution:
    """Cancel a run. A PENDING run is CANCELLED at once; a PREPARING/RUNNING one is flagged and its
    runner stops within seconds (before its next token), records what it spent, then ends CANCELLED."""
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
    _mark_cancel_in_redis(execution.pk)
    execution.refresh_from_db()
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


def _mark_cancel_in_redis(execution_id) -> None:
    try:
        get_redis_connection("default").set(f"{settings.KAI_REDIS_PREFIX}:runs:cancel:{execution_id}", 1, ex=3600)
    except Exception:
        logger.warning("could not flag cancel of %s in Redis; the heartbeat poll still sees it", execution_id)
