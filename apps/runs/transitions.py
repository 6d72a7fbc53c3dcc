"""The transition service of the run engine: ``execution_transition`` is the only code that changes
``Execution.status`` (DESIGN §7, house style 4): a locked, conditional update that writes an
``ExecutionEvent`` and publishes ``execution.<status>`` in the same statement and transaction. Also
the claim of a run by a worker, and how a synchronous caller waits for a run's end
(``wait_for_terminal``, woken by the end itself).
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
from collections.abc import Sequence
from contextlib import contextmanager, nullcontext
from functools import partial

from django.conf import settings
from django.db import connection, models, transaction
from django.utils import timezone
from django_redis import get_redis_connection

from apps.events.services import event_insert_ctes, listeners_want, published
from apps.runs.models import TERMINAL_STATUSES, Execution, ExecutionStatus
from apps.runs.registry import run_terminal_hooks
from kai_platform.db.nul import without_nul
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
    path: Sequence[tuple[str, str]],
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
    path = [(status, without_nul(reason)) for status, reason in path]  # reasons and fields from outside
    fields = without_nul(fields)
    sql, params = _transition_statement(
        execution_id=execution_id,
        path=path,
        allowed=allowed,
        unless_cancel_requested=unless_cancel_requested,
        cap=cap,
        fields=fields,
    )
    types = {f"execution.{status.lower()}" for status, _ in path}
    # Outside any transaction, and with no listener for these events, the statement(s) run in
    # autocommit: one round trip is one transaction, committed by the server as soon as it ran, so
    # the organization's locks are never held while this thread waits for its turn to run Python.
    # Otherwise the listeners run inside the transaction, before it commits.
    own = connection.in_atomic_block or listeners_want(types)
    with transaction.atomic(savepoint=False) if own else nullcontext():
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            if cap is not None:
                cursor.nextset()
            rows = cursor.fetchall()
        if not rows or rows[0][1] is None:
            return False, rows[0][0] if rows else None
        _publish_steps(execution_id, path, rows, fields)
    return True, rows[0][0]


def _column(name: str) -> models.Field:
    """``Execution``'s concrete field ``name`` (a column this module writes)."""
    field = Execution._meta.get_field(name)
    assert isinstance(field, models.Field), name
    return field


def _transition_statement(
    *, execution_id, path: Sequence[tuple[str, str]], allowed, unless_cancel_requested: bool, cap, fields: dict
) -> tuple[str, list]:
    """The SQL and parameters of ``_transition``'s round trip (the cap's lock first when there is one)."""
    to = path[-1][0]
    now = timezone.now()
    sets, set_params = [], []
    for name, value in _updates(to, fields, now).items():
        model_field = _column(name)
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
    return prefix + sql, prefix_params + params


def _updates(to: str, fields: dict, now) -> dict:
    """The columns a move to ``to`` writes: the caller's, the status and the times it sets."""
    updates = {**fields, "status": to, "updated_at": now}
    if to == S.RUNNING:
        updates.setdefault("started_at", now)
        updates.setdefault("heartbeat_at", now)
    if to in TERMINAL_STATUSES:
        updates.setdefault("completed_at", now)
    if to == S.PENDING:
        updates.setdefault("heartbeat_at", None)
    return updates


def publish_step_event(pk, created_at, organization_id, run: tuple, status: str, reason: str) -> None:
    """``published`` for one step's event, its ``pk`` and ``created_at`` drawn by the statement that
    inserted it: ``run`` is ``(execution_id, from_status, kind, agent_id, parent_id)`` (a claim's
    batch, ``apps.runs.intake``, publishes its steps through it too)."""
    execution_id, from_status, kind, agent_id, parent_id = run
    published(
        pk=pk,
        created_at=created_at,
        organization=organization_id,
        type=f"execution.{status.lower()}",
        data=_event_data(execution_id, kind, from_status, status, reason, agent_id, parent_id),
        agent=agent_id,
        execution=execution_id,
        severity="error" if status == S.FAILED else "info",
        component="runs",
    )


def _publish_steps(execution_id, path: Sequence[tuple[str, str]], rows: list, fields: dict) -> None:
    """``published`` for each step's event the statement inserted; at the end of a run, its waiters
    are signalled (with the ``fields`` it wrote) and its terminal hooks called once the transaction commits."""
    _count, from_status, organization_id, kind, agent_id, parent_id = rows[0][:6]
    events = [(pk, created_at) for *_, pk, created_at, _type in rows]
    if len(events) != len(path):
        raise RuntimeError(f"transition of {execution_id} published {len(events)} events for {len(path)} steps")
    previous = from_status
    for (status, reason), (pk, created_at) in zip(path, events):
        publish_step_event(
            pk, created_at, organization_id, (execution_id, previous, kind, agent_id, parent_id), status, reason
        )
        previous = status
    if path[-1][0] in TERMINAL_STATUSES:
        _ended_on_commit(execution_id, path[-1][0], kind, organization_id, agent_id, parent_id, fields)


def _ended_on_commit(execution_id, to, kind, organization_id, agent_id, parent_id, fields: dict) -> None:
    """A run's end, once its transaction commits: its waiters signalled (with the ``fields`` the end
    wrote), its terminal hooks called."""
    # after the run's shared counters (registered by its last flush): a synchronous caller woken by
    # it reads its usage; before the terminal hooks (registered below). A batch that leaves its
    # hooks to its caller (``terminal_hooks_batched(later=…)``) leaves this to it too
    if not _signal_later.get():
        transaction.on_commit(partial(_signal_finished, str(execution_id), str(to), fields), robust=True)
    ended = {
        "execution_id": str(execution_id),
        "status": str(to),
        "kind": kind,
        "organization_id": organization_id,
        "agent_id": agent_id,
        "parent_id": parent_id,
    }
    collected = _ended.get()
    if collected is not None:  # the batch calls the hooks of all its runs on commit
        collected.append(ended)
    else:
        transaction.on_commit(partial(run_terminal_hooks, [ended]))


_ended: contextvars.ContextVar[list | None] = contextvars.ContextVar("kai_runs_ended", default=None)
_signal_later: contextvars.ContextVar[bool] = contextvars.ContextVar("kai_runs_signal_later", default=False)


@contextmanager
def terminal_hooks_batched(*, later: list | None = None):
    """The runs ended inside (in the caller's transaction) have their terminal hooks called
    together once it commits: a batch hook (``on_executions_terminal``) once for all of them.
    Given ``later`` (a list), the ended runs are appended to it instead, for the caller to signal
    their waiters (``signal_ended``) and pass them to ``run_terminal_hooks`` itself once the
    transaction committed."""
    collected: list[dict] = []
    token, signal_token = _ended.set(collected), _signal_later.set(later is not None)
    try:
        yield
    finally:
        _ended.reset(token)
        _signal_later.reset(signal_token)
    if collected and later is not None:
        later += collected
    elif collected:
        transaction.on_commit(partial(run_terminal_hooks, collected))


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


_MANY_SQL = """
WITH v (id, reason, {names}) AS (
    VALUES {rows}
), old AS (
    SELECT e.id, e.status FROM crews_execution e WHERE e.id IN (SELECT id FROM v) AND e.status = ANY(%s)
    ORDER BY e.id FOR UPDATE
), upd AS (
    UPDATE crews_execution e SET {sets} FROM old, v WHERE e.id = old.id AND v.id = old.id
    RETURNING e.id, old.status AS from_status, e.organization_id, e.kind, e.agent_id, e.parent_id, v.reason
), locked AS MATERIALIZED (
    -- every row locked and updated before the event lock is taken (the order of a lone transition)
    SELECT * FROM upd ORDER BY id
), history AS (
    INSERT INTO crews_executionevent (organization_id, execution_id, from_status, to_status, reason, at)
    SELECT locked.organization_id, locked.id, locked.from_status, %s, locked.reason, %s FROM locked ORDER BY locked.id
), {events}
SELECT locked.id, locked.from_status, locked.kind, locked.agent_id, locked.parent_id, locked.reason,
       -- the events' ids and times on the first row only (on every row, a batch of N runs sent N² of them)
       CASE WHEN row_number() OVER (ORDER BY locked.id) = 1 THEN
           (SELECT array_agg(kai_event.id ORDER BY kai_event.id) FROM kai_event) END,
       CASE WHEN row_number() OVER (ORDER BY locked.id) = 1 THEN
           (SELECT array_agg(kai_event.created_at ORDER BY kai_event.id) FROM kai_event) END
FROM locked ORDER BY locked.id
"""

#: the event of each run of ``_MANY_SQL``, as ``_STEP_EVENT_VALUES`` writes a lone transition's
_MANY_EVENT_VALUES = {
    "type": "%s",
    "severity": "%s",
    "component": "'runs'",
    "agent_id": "locked.agent_id",
    "execution_id": "locked.id",
    "data": (
        "jsonb_build_object('execution_id', locked.id::text, 'kind', locked.kind, 'from', locked.from_status, "
        "'to', %s::text, 'status', %s::text, 'reason', locked.reason, 'agent_id', locked.agent_id::text) || "
        "CASE WHEN locked.parent_id IS NULL THEN '{}'::jsonb "
        "ELSE jsonb_build_object('parent_id', locked.parent_id::text) END"
    ),
    "created_at": "%s",
}


def execution_transition_many(*, organization_id, to: str, runs: list[tuple]) -> set[str]:
    """``execution_transition`` of many runs of one organization in ONE statement: ``runs`` is
    ``[(execution_id, reason, fields), …]`` (every ``fields`` with the same keys). Each run moves
    only from a status ``to`` may be entered from; each gets its ``ExecutionEvent`` and its
    ``execution.<status>`` event (ids in run-id order, the event lock taken once, after every
    row's lock), published and, at an end, its waiters and terminal hooks on commit as a lone
    transition's. Returns the ids of the runs it moved."""
    to = ExecutionStatus(to)
    if not runs:
        return set()
    sql, params = transition_many_statement(to=to, runs=runs)
    with transaction.atomic(savepoint=False):
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            fetched = cursor.fetchall()
        written = {str(execution_id): fields for execution_id, _reason, fields in runs}
        return transition_many_published(organization_id=organization_id, to=to, fetched=fetched, written=written)


def transition_many_statement(*, to: str, runs: list[tuple]) -> tuple[str, list]:
    """The statement of ``execution_transition_many``, for a caller that sends it with its own in one
    round trip (the last of them: it takes the organization's event lock); hand the rows it
    returned to ``transition_many_published``, in the same transaction."""
    return _many_statement(ExecutionStatus(to), runs)


def transition_many_published(*, organization_id, to: str, fetched: list, written: dict | None = None) -> set[str]:
    """The rest of ``execution_transition_many`` once its statement returned ``fetched``: each
    moved run's event published and, at an end, its waiters (signalled with the fields ``written``
    gives for it: run id → fields) and terminal hooks on commit."""
    to = ExecutionStatus(to)
    if not fetched:
        return set()
    event_ids, created = fetched[0][6] or [], fetched[0][7] or []
    if len(event_ids) != len(fetched):
        raise RuntimeError(f"a batched transition published {len(event_ids)} events for {len(fetched)} runs")
    written = written or {}
    for (execution_id, from_status, kind, agent_id, parent_id, reason, *_), pk, at in zip(fetched, event_ids, created):
        publish_step_event(pk, at, organization_id, (execution_id, from_status, kind, agent_id, parent_id), to, reason)
        if to in TERMINAL_STATUSES:
            _ended_on_commit(
                execution_id, to, kind, organization_id, agent_id, parent_id, written.get(str(execution_id), {})
            )
    return {str(row[0]) for row in fetched}


def _many_statement(to: str, runs: list[tuple]) -> tuple[str, list]:
    """The SQL and parameters of ``execution_transition_many``'s statement."""
    runs = [(execution_id, without_nul(reason), without_nul(fields)) for execution_id, reason, fields in runs]
    names = sorted(runs[0][2])
    if "status" in names or any(sorted(fields) != names for _, _, fields in runs):
        raise ValueError("every run's fields must have the same keys, and not `status`")
    now = timezone.now()
    columns = {name: _column(name) for name in names}
    typed = ", ".join(["%s::uuid", "%s::text"] + [f"%s::{columns[n].db_type(connection)}" for n in names])
    params = []
    for execution_id, reason, fields in runs:
        params += [str(execution_id), reason[:4000]]
        params += [columns[n].get_db_prep_save(fields[n], connection) for n in names]
    sets, set_params = [], []
    for name, value in _updates(to, {}, now).items():
        model_field = _column(name)
        sets.append(f'"{model_field.column}" = %s')
        set_params.append(model_field.get_db_prep_save(value, connection))
    sets += [f'"{columns[n].column}" = v."{n}"' for n in names]
    sql = _MANY_SQL.format(
        names=", ".join(f'"{n}"' for n in names),
        rows=", ".join([f"({typed})"] * len(runs)),
        sets=", ".join(sets),
        events=event_insert_ctes(source="locked", values=_MANY_EVENT_VALUES, order_by="locked.id"),
    )
    params += [[str(status) for status in ALLOWED_FROM[to]], *set_params, str(to), now]
    params += [f"execution.{to.lower()}", "error" if to == S.FAILED else "info", str(to), str(to), now]
    return sql, params


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


#: the most a run's end signal carries of what the end wrote (its JSON); a larger end signals its
#: status alone and the waiter reads the row
SIGNAL_MAX_BYTES = 65536
#: what a waiter may be answered from without reading the row, when the end wrote it
SIGNAL_FIELDS = ("result", "error")


def _signal_finished(execution_id: str, status: str, fields: dict | None = None) -> None:
    """Wake callers blocked in ``wait_for_terminal`` (a Redis list per run, short-lived)."""
    _signal_many([(execution_id, status, fields)])


def _signal_payload(status: str, fields: dict | None) -> str:
    """The signal: the JSON of the status and of the ``SIGNAL_FIELDS`` the end wrote (``fields``), when small."""
    payload = status
    given = without_nul(fields or {})
    carried = {name: given[name] for name in SIGNAL_FIELDS if name in given}
    if carried:
        try:
            encoded = json.dumps({"status": status, **carried}, separators=(",", ":"))
        except (TypeError, ValueError):  # not JSON as the row holds it: the waiter reads the row
            encoded = ""
        if encoded and len(encoded) <= SIGNAL_MAX_BYTES:
            payload = encoded
    return payload


def _signal_many(ends: list[tuple]) -> None:
    """``[(execution id, status, fields), …]`` signalled in one pipeline (one Redis round trip)."""
    if not ends:
        return
    try:
        pipe = get_redis_connection("default").pipeline()
        for execution_id, status, fields in ends:
            pipe.lpush(_done_key(execution_id), _signal_payload(status, fields))
            pipe.expire(_done_key(execution_id), 120)
        pipe.execute()
    except Exception:  # waiters fall back to polling the row
        logger.warning(
            "could not signal the end of execution(s) %s", ", ".join(str(e[0]) for e in ends[:5]), exc_info=True
        )


def signal_ended(ended: list[dict], fields: dict | None = None) -> None:
    """Wake the waiters of runs whose end committed (dicts as ``terminal_hooks_batched`` collects),
    all in one Redis round trip; ``fields``: run id → the fields its end wrote, which the signal carries."""
    fields = fields or {}
    _signal_many([(run["execution_id"], run["status"], fields.get(run["execution_id"])) for run in ended])


def _signalled(execution_id, value, only: tuple[str, ...]) -> Execution | None:
    """The run as its end's signal tells it, when the signal carries every field of ``only`` (and
    its status); the other fields load from the row on first use. None: read the row."""
    if not value or not only:
        return None
    try:
        signal = json.loads(value)
    except (TypeError, ValueError):
        return None  # a bare status
    if not isinstance(signal, dict) or signal.get("status") not in TERMINAL_STATUSES:
        return None
    names = ["id", "status", *only]
    if any(name not in signal for name in only) or not set(only) <= set(SIGNAL_FIELDS):
        return None
    return Execution.from_db(Execution.objects.db, names, [execution_id, signal["status"], *(signal[n] for n in only)])


def wait_for_terminal(*, execution_id, timeout: float, only: tuple[str, ...] = ()) -> Execution:
    """Block until the execution ends or ``timeout`` passes; returns the row as it is then.

    The caller holds no DB connection while it waits: it waits on the run's Redis list, which the
    end of the run signals (``_signal_finished``; a signal pushed before the wait began is still
    there), and reads the row once woken, or every second should the signal be lost. ``only``:
    the fields (of ``SIGNAL_FIELDS``) the caller reads besides the status — when the end's signal
    carries them all, the run is answered from it without reading the row (any other field loads
    on first use)."""
    deadline = time.monotonic() + max(0.0, timeout)
    key = _done_key(str(execution_id))
    while True:
        if not connection.in_atomic_block:
            connection.close()
        remaining = deadline - time.monotonic()
        value = None
        if remaining > 0:
            try:  # the signal goes back to the list's head: every waiter of the run sees it
                value = get_redis_connection("default").blmove(key, key, min(1.0, remaining), "RIGHT", "LEFT")
            except Exception:
                time.sleep(min(0.5, max(0.05, remaining)))
        execution = _signalled(execution_id, value, only)
        if execution is not None:
            return execution
        execution = Execution.objects.get(pk=execution_id)
        if execution.is_terminal or time.monotonic() >= deadline:
            return execution
