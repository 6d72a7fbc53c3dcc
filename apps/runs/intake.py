"""How a runs worker takes its messages: the runs that arrive together are loaded
in one query and claimed in one statement per organization (``claim_many``), their transitions
recorded and published as a lone claim's are (``execution.preparing`` then ``execution.running``).
One thread per process does it for the pool's threads (``take``); a run the batch could not claim
(not PENDING, cancel requested, a kind with no runner, a failed batch) goes the single-run way
in its own thread (``apps.runs.lifecycle``)."""

from __future__ import annotations

import logging
import uuid
from contextlib import nullcontext
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models.expressions import RawSQL
from django.utils import timezone

from apps.events.services import event_insert_ctes, listeners_want
from apps.runs import registry as plugins
from apps.runs.batching import Batcher
from apps.runs.models import Execution, ExecutionStatus
from apps.runs.services import CLAIM_LOCK_NAMESPACE
from apps.runs.transitions import publish_step_event
from kai_platform import drain
from kai_platform.db.compiled import CompiledRead
from kai_platform.tenancy.locks import organization_lock_key

logger = logging.getLogger(__name__)
S = ExecutionStatus

#: how long a run that queued behind a busy intake waits for more (a lone run is claimed at once, by
#: its own thread), and the most in one batch
WINDOW_SECONDS = 0.005
MAX_BATCH = 250


#: running executions at once per organization plan (``settings.max_concurrent_runs`` overrides)
PLAN_CONCURRENCY = {"free": 2, "standard": 5, "pro": 20, "enterprise": 100}


def concurrency_cap(organization) -> int:
    override = (organization.settings or {}).get("max_concurrent_runs")
    if override:
        return int(override)
    return PLAN_CONCURRENCY.get(organization.plan, PLAN_CONCURRENCY["standard"])


@dataclass
class Taken:
    execution: Execution | None
    #: "claimed" / "over_cap" / "lost" when the batch tried to claim it; None: the run's thread decides
    outcome: str | None = None


_CLAIM_SQL = """
WITH {running}cand AS (
    SELECT id, status FROM crews_execution WHERE id = ANY(%s::uuid[]) AND status = 'PENDING'
    AND NOT cancel_requested ORDER BY priority DESC, created_at, id {limit} FOR UPDATE
), upd AS (
    UPDATE crews_execution e SET status = 'RUNNING', worker = %s, attempts = e.attempts + 1, heartbeat_at = %s,
        started_at = %s, updated_at = %s
    FROM cand WHERE e.id = cand.id
    RETURNING e.id, cand.status AS from_status, e.organization_id, e.kind, e.agent_id, e.parent_id
), locked AS MATERIALIZED (
    -- sorted: every row is locked and updated before the first one is read on, so the event lock
    -- (taken below) is never held while this statement waits for a run's row (no deadlock with a lone claim)
    SELECT * FROM upd ORDER BY id
), steps (ord, from_status, to_status, reason) AS (
    VALUES (0, NULL::text, 'PREPARING'::text, %s::text), (1, 'PREPARING'::text, 'RUNNING'::text, 'started'::text)
), history AS (
    INSERT INTO crews_executionevent (organization_id, execution_id, from_status, to_status, reason, at)
    SELECT locked.organization_id, locked.id, COALESCE(steps.from_status, locked.from_status), steps.to_status,
           steps.reason, %s
    FROM locked, steps ORDER BY locked.id, steps.ord
), {events}
SELECT {running_n}, locked.id, locked.from_status, locked.kind, locked.agent_id, locked.parent_id,
       -- the events' ids and times on the first row only (on every row, a batch of N runs sent N² of them)
       CASE WHEN row_number() OVER (ORDER BY locked.id) = 1 THEN
           (SELECT array_agg(kai_event.id ORDER BY kai_event.id) FROM kai_event) END,
       CASE WHEN row_number() OVER (ORDER BY locked.id) = 1 THEN
           (SELECT array_agg(kai_event.created_at ORDER BY kai_event.id) FROM kai_event) END
FROM {running_from} ORDER BY locked.id
"""

#: the event of each step, as ``apps.runs.services`` writes a lone claim's
_EVENT_VALUES = {
    "type": "'execution.' || lower(steps.to_status)",
    "severity": "'info'",
    "component": "'runs'",
    "agent_id": "locked.agent_id",
    "execution_id": "locked.id",
    "data": (
        "jsonb_build_object('execution_id', locked.id::text, 'kind', locked.kind, "
        "'from', COALESCE(steps.from_status, locked.from_status), 'to', steps.to_status, "
        "'status', steps.to_status, 'reason', steps.reason, 'agent_id', locked.agent_id::text) || "
        "CASE WHEN locked.parent_id IS NULL THEN '{}'::jsonb "
        "ELSE jsonb_build_object('parent_id', locked.parent_id::text) END"
    ),
    "created_at": "%s",
}


def claim_many(*, organization_id, execution_ids: list, worker: str, cap: int | None) -> dict[str, str]:
    """PENDING → PREPARING → RUNNING for the runs of one organization in ONE statement, as
    ``execution_claim(start=True)`` does one: the history rows and the two events of each run (ids in
    run order, then step order), a run whose cancel was requested left alone. ``cap``: the limit of
    top-level runs PREPARING/RUNNING at once, checked under the organization's claim lock (the
    highest priority first). Returns id → "claimed" | "over_cap" | "lost"."""
    now = timezone.now()
    reason = f"claimed by {worker}"[:4000]
    running, running_n, running_from, limit, params = "", "NULL::bigint", "locked", "", []
    prefix, prefix_params = "", []
    if cap is not None:
        prefix = "SELECT pg_advisory_xact_lock(%s, %s);\n"
        prefix_params = [CLAIM_LOCK_NAMESPACE, organization_lock_key(organization_id)]
        running = (
            "running AS (SELECT count(*) AS n FROM crews_execution WHERE organization_id = %s "
            "AND status IN ('PREPARING', 'RUNNING') AND parent_id IS NULL), "
        )
        params.append(organization_id)
        limit = "LIMIT GREATEST(0, %s - (SELECT n FROM running))"
        running_n, running_from = "running.n", "running LEFT JOIN locked ON true"
    sql = _CLAIM_SQL.format(
        running=running,
        limit=limit,
        running_n=running_n,
        running_from=running_from,
        events=event_insert_ctes(source="locked, steps", values=_EVENT_VALUES, order_by="locked.id, steps.ord"),
    )
    ids = [str(i) for i in execution_ids]
    params += [ids, *([cap] if cap is not None else []), worker[:200], now, now, now, reason, now, now]
    types = {"execution.preparing", "execution.running"}
    # With no listener for these events the statement runs in autocommit: one round trip is one
    # transaction, so the organization's locks are never held while this thread waits for the GIL.
    with transaction.atomic(savepoint=False) if listeners_want(types) else nullcontext():
        with connection.cursor() as cursor:
            cursor.execute(prefix + sql, prefix_params + params)
            if prefix:
                cursor.nextset()
            fetched = cursor.fetchall()
        rows = [row for row in fetched if row[1] is not None]
        _published(organization_id, rows, worker=reason)
    claimed = {str(row[1]) for row in rows}
    seen = fetched[0][0] if fetched and fetched[0][0] is not None else 0
    over = cap is not None and seen + len(claimed) >= cap
    outcomes = {}
    for execution_id in ids:
        if execution_id in claimed:
            outcomes[execution_id] = "claimed"
        else:  # over the cap, or taken/ended/cancel-requested meanwhile: the run's thread looks again
            outcomes[execution_id] = "over_cap" if over else "lost"
    return outcomes


def _published(organization_id, rows: list, *, worker: str) -> None:
    """``published`` for each event of the claimed runs, in id order (run order, then step)."""
    if not rows:
        return
    event_ids, created = rows[0][6] or [], rows[0][7] or []
    if len(event_ids) != 2 * len(rows):
        raise RuntimeError(f"a batched claim published {len(event_ids)} events for {len(rows)} runs")
    position = 0
    for _n, execution_id, from_status, kind, agent_id, parent_id, *_ in rows:
        previous = from_status
        for status, reason in ((S.PREPARING, worker), (S.RUNNING, "started")):
            run = (execution_id, previous, kind, agent_id, parent_id)
            publish_step_event(event_ids[position], created[position], organization_id, run, status, reason)
            previous = status
            position += 1


#: the runs of a batch with their organization and agent (compiled once: the read is on every run's path)
_LOAD = CompiledRead(
    lambda ids: Execution.objects.select_related("organization", "agent").filter(
        pk__in=RawSQL("SELECT unnest(%s::uuid[])", (ids,))
    )
)


def _take_batch(items: list[tuple[str, str]]) -> list[Taken]:
    """(execution id, worker) → the execution loaded, and claimed when it can be."""
    ids = list(dict.fromkeys(execution_id for execution_id, _ in items))
    executions = {str(e.pk): e for e in _LOAD.all(ids)}
    taken = {execution_id: Taken(execution) for execution_id, execution in executions.items()}
    if not drain.is_draining():
        groups: dict[tuple, list[str]] = {}
        for execution_id, worker in items:
            execution = executions.get(execution_id)
            if (
                execution is not None
                and execution.status == S.PENDING
                and not execution.cancel_requested
                and plugins.runner_for(execution.kind) is not None
                and taken[execution_id].outcome is None
            ):
                key = (execution.organization_id, execution.parent_id is None, worker)
                if execution_id not in groups.setdefault(key, []):
                    groups[key].append(execution_id)
        for (organization_id, top, worker), group in groups.items():
            cap = concurrency_cap(executions[group[0]].organization) if top else None
            for execution_id, outcome in claim_many(
                organization_id=organization_id, execution_ids=group, worker=worker, cap=cap
            ).items():
                taken[execution_id].outcome = outcome
    # a message delivered twice in one batch: the second is told it was lost
    answers, seen = [], set()
    for execution_id, _ in items:
        found = taken.get(execution_id)
        answers.append(
            Taken(found.execution, "lost" if found.outcome else None)
            if found and execution_id in seen
            else (found or Taken(None))
        )
        seen.add(execution_id)
    return answers


class Intake:
    """Loads and claims the runs the pool's threads were handed, in batches (``Batcher``)."""

    def __init__(self):
        self._batcher = Batcher("kai-run-intake", _take_batch, window=WINDOW_SECONDS, max_batch=MAX_BATCH)

    def take(self, execution_id, *, worker: str) -> Taken:
        """The execution (None: no such run) and, when the batch claimed it, the outcome."""
        try:
            uuid.UUID(str(execution_id))
        except ValueError:
            return Taken(None)
        return self._batcher.submit((str(execution_id), worker))


intake = Intake()
