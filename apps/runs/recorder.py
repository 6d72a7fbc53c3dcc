"""Batched writes of a run: logs, trace spans, token/cost counters and the usage rollup.

The runner adds entries in memory; ``maybe_flush`` writes them every ``FLUSH_SECONDS`` or
``FLUSH_ENTRIES`` entries in one short transaction, then hands the connection back to the pool —
never one transaction per token, and no connection held while the provider is waited on.
A flush records nothing once the execution has ended (the UPDATE is conditional on an active
status), so a cancelled or reaped run never gains tokens afterwards. The shared counters (usage
rollup, provider usage) are written after a batch commits, one short statement each (see
``flush``). A run's last batch is written by its end (``LastBatches``: the statements the end
sends with its transition in one round trip): its rows, then the shared counters, in the
transaction of the end, so its waiter, woken on commit, reads them.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING

from django.db import connection, models, transaction
from django.utils import timezone

from apps.runs.batching import Batcher
from apps.runs.models import ExecutionLog, TraceSpan
from apps.runs.registry import service
from kai_platform import telemetry
from kai_platform.db.nul import without_nul

if TYPE_CHECKING:
    from opentelemetry.trace import Span as OtelSpan

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 0.5
FLUSH_ENTRIES = 50
MAX_LOG_CHARS = 8000


#: what a usage rollup row already there gets: the new counts added to it
_USAGE_ADDED = (
    "ON CONFLICT ON CONSTRAINT uniq_usage_rollup DO UPDATE SET "
    "executions = crews_usagerollup.executions + EXCLUDED.executions, "
    "llm_calls = crews_usagerollup.llm_calls + EXCLUDED.llm_calls, "
    "tokens_in = crews_usagerollup.tokens_in + EXCLUDED.tokens_in, "
    "tokens_out = crews_usagerollup.tokens_out + EXCLUDED.tokens_out, "
    "cost = crews_usagerollup.cost + EXCLUDED.cost, updated_at = EXCLUDED.updated_at, "
    "agent_name = EXCLUDED.agent_name"
)
#: one row of the usage rollup (organization/agent/model/day), added to when it exists
USAGE_UPSERT = (
    "INSERT INTO crews_usagerollup (id, organization_id, created_at, updated_at, agent_id, agent_name, "
    "day, model, executions, llm_calls, tokens_in, tokens_out, cost) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) " + _USAGE_ADDED
)


def new_span_id() -> str:
    return uuid.uuid4().hex[:16]


@dataclass
class Span:
    span_id: str
    kind: str
    name: str
    parent_span_id: str = ""
    agent_id: str | None = None
    model: str = ""
    started_at: datetime = field(default_factory=timezone.now)
    started_mono: float = field(default_factory=time.monotonic)
    attributes: dict = field(default_factory=dict)
    tokens_in: int = 0
    tokens_out: int = 0
    cost: Decimal = Decimal(0)
    #: its OpenTelemetry span (kai_platform.telemetry), and prompt/completion text for it (never stored)
    otel: OtelSpan | None = None
    content: dict = field(default_factory=dict)


class RunRecorder:
    def __init__(self, *, execution_id, organization_id, trace_id: str):
        self.execution_id = execution_id
        self.organization_id = organization_id
        self.trace_id = trace_id
        self._lock = threading.Lock()
        self._logs: list[tuple[str, str, dict, datetime]] = []
        self._spans: list[TraceSpan] = []
        self._tokens_in = 0
        self._tokens_out = 0
        self._cost = Decimal(0)
        self._usage: dict[tuple, list] = {}
        self._provider_calls: list[tuple] = []  # (provider, tokens in, tokens out, cost) per call
        self._counted_usage_keys: set[tuple] = set()
        self._last_flush = time.monotonic()
        self.ended = False  # the execution left PREPARING/RUNNING: nothing more is recorded
        # totals of the whole run (what the result reports)
        self.total_tokens_in = 0
        self.total_tokens_out = 0
        self.total_cost = Decimal(0)
        self.llm_calls = 0
        self.otel_root: OtelSpan | None = None  # the run's OpenTelemetry span, parent of spans without one

    # --- collecting -------------------------------------------------------------------------
    def log(self, message: str, level: str = "info", **data) -> None:
        with self._lock:
            self._logs.append((level, without_nul(message[:MAX_LOG_CHARS]), without_nul(data), timezone.now()))

    def span_start(
        self,
        kind: str,
        name: str,
        parent: Span | None = None,
        *,
        agent_id=None,
        model: str = "",
        content: dict | None = None,
        **attributes,
    ) -> Span:
        span = Span(
            span_id=new_span_id(),
            kind=kind,
            name=name[:300],
            parent_span_id=parent.span_id if parent else "",
            agent_id=str(agent_id) if agent_id else None,
            model=model,
            attributes=attributes,
        )
        span.otel = telemetry.start_span(
            name=span.name,
            parent=parent.otel if parent else self.otel_root,
            kind=str(kind),
            organization_id=self.organization_id,
            model=model,
            system=attributes.get("provider", ""),
            content=content,
        )
        return span

    def span_end(self, span: Span, *, status: str = "ok", **attributes) -> None:
        span.attributes.update(without_nul(attributes))
        ended = timezone.now()
        row = TraceSpan(
            organization_id=self.organization_id,
            execution_id=self.execution_id,
            trace_id=self.trace_id,
            span_id=span.span_id,
            parent_span_id=span.parent_span_id,
            kind=span.kind,
            name=span.name,
            status=status,
            agent_id=span.agent_id,
            model=span.model,
            started_at=span.started_at,
            ended_at=ended,
            duration_ms=round((time.monotonic() - span.started_mono) * 1000, 3),
            tokens_in=span.tokens_in,
            tokens_out=span.tokens_out,
            cost=span.cost,
            attributes=span.attributes,
        )
        telemetry.end_span(
            span.otel,
            status=status,
            tokens_in=span.tokens_in,
            tokens_out=span.tokens_out,
            cost=span.cost if span.kind == "llm" else None,
            model=span.model,
            error=str(attributes.get("error", "")),
            content=span.content,
        )
        with self._lock:
            self._spans.append(row)

    def tokens(self, *, tokens_in: int = 0, tokens_out: int = 0, cost: Decimal | int = 0) -> None:
        """Token progress (streamed output is counted as it arrives)."""
        with self._lock:
            self._tokens_in += tokens_in
            self._tokens_out += tokens_out
            self._cost += Decimal(cost)
            self.total_tokens_in += tokens_in
            self.total_tokens_out += tokens_out
            self.total_cost += Decimal(cost)

    def usage(
        self, *, agent_id, agent_name: str, model: str, tokens_in: int, tokens_out: int, cost, provider=None
    ) -> None:
        """One finished LLM call, for the per-organization/agent/day/model rollup and, when a
        configured provider served it, that provider's usage of the day (agents app)."""
        key = (str(agent_id) if agent_id else None, (agent_name or "")[:200], model[:200], timezone.now().date())
        with self._lock:
            entry = self._usage.setdefault(key, [0, 0, 0, Decimal(0)])
            entry[0] += 1
            entry[1] += tokens_in
            entry[2] += tokens_out
            entry[3] += Decimal(cost)
            self.llm_calls += 1
            if provider is not None:
                self._provider_calls.append((provider, tokens_in, tokens_out, cost))

    # --- writing ----------------------------------------------------------------------------
    def pending(self) -> int:
        return len(self._logs) + len(self._spans) + len(self._usage) + len(self._provider_calls)

    def maybe_flush(self) -> None:
        """``flush`` when due, in one round trip with the other runs' flushes due at the same time
        (``flushes``); alone, as ``flush`` does, when that batch failed."""
        if self.pending() >= FLUSH_ENTRIES or (
            time.monotonic() - self._last_flush >= FLUSH_SECONDS
            and (self.pending() or self._tokens_in or self._tokens_out)
        ):
            try:
                flushes.submit(self)
            except Exception:
                logger.warning("batched flush of %s failed; flushing it alone", self.execution_id, exc_info=True)
                self.flush()

    def flush(self) -> bool:
        """Write what was collected; False when the execution has ended (then nothing of the run
        is written, but the providers' usage: that money was spent either way). Inside the
        caller's transaction (the run's last batch goes with its end) it makes no savepoint.

        The shared counters — the usage rollup of the organization/agent/model/day and the
        provider's usage of the day — are rows every run of the organization updates: they are
        written once the batch has committed, each in a statement of its own, so that no
        transaction holds those rows while it does anything else."""
        logs, spans, usage, providers, tokens_in, tokens_out, cost = self._take()
        if self.ended:
            if providers:
                self._write_counters({}, providers)
            return False
        if not (logs or spans or usage or providers or tokens_in or tokens_out or cost):
            return True
        written = True
        try:
            with transaction.atomic(savepoint=False):
                if logs or spans or usage or tokens_in or tokens_out or cost:
                    with connection.cursor() as cursor:
                        cursor.execute(
                            "UPDATE crews_execution SET log_seq = log_seq + %s, tokens_in = tokens_in + %s, "
                            "tokens_out = tokens_out + %s, cost = cost + %s "
                            "WHERE id = %s AND status IN ('PREPARING', 'RUNNING') RETURNING log_seq",
                            [len(logs), tokens_in, tokens_out, cost, self.execution_id],
                        )
                        row = cursor.fetchone()
                    if row is None:
                        self.ended, written = True, False
                        usage = {}
                    else:
                        first = row[0] - len(logs) + 1
                        if logs:
                            ExecutionLog.objects.bulk_create(
                                [
                                    ExecutionLog(
                                        organization_id=self.organization_id,
                                        execution_id=self.execution_id,
                                        seq=first + i,
                                        level=level,
                                        message=message,
                                        data=data,
                                        created_at=at,
                                    )
                                    for i, (level, message, data, at) in enumerate(logs)
                                ]
                            )
                        if spans:
                            TraceSpan.objects.bulk_create(spans)
                if usage or providers:
                    transaction.on_commit(partial(self._write_counters, usage, providers), robust=True)
        finally:
            if not connection.in_atomic_block:
                connection.close()  # back to the pool until the next batch
        return written

    def _take(self) -> tuple:
        """What was collected since the last flush (and the recorder emptied of it)."""
        with self._lock:
            taken = (
                self._logs,
                self._spans,
                self._usage,
                self._provider_calls,
                self._tokens_in,
                self._tokens_out,
                self._cost,
            )
            self._logs, self._spans, self._usage, self._provider_calls = [], [], {}, []
            self._tokens_in = self._tokens_out = 0
            self._cost = Decimal(0)
            self._last_flush = time.monotonic()
        return taken

    def _put_back(self, taken: tuple) -> None:
        """A flush that was rolled back: its entries go before what was collected since."""
        logs, spans, usage, providers, tokens_in, tokens_out, cost = taken
        with self._lock:
            self._logs[:0], self._spans[:0], self._provider_calls[:0] = logs, spans, providers
            for key, (calls, tin, tout, spent) in usage.items():
                entry = self._usage.setdefault(key, [0, 0, 0, Decimal(0)])
                entry[0], entry[1], entry[2], entry[3] = (
                    entry[0] + calls,
                    entry[1] + tin,
                    entry[2] + tout,
                    entry[3] + spent,
                )
            self._tokens_in += tokens_in
            self._tokens_out += tokens_out
            self._cost += cost

    def _write_counters(self, usage: dict, providers: list) -> None:
        """Each in autocommit when the caller is in none: a row lock held for one statement."""
        try:
            if usage:
                self._write_usage(usage)
            for provider, tokens_in, tokens_out, cost in providers:
                service("provider_record_usage")(provider, tokens_in, tokens_out, cost)
        finally:
            if not connection.in_atomic_block:
                connection.close()

    def _write_usage(self, usage: dict) -> None:
        now = timezone.now()
        rows = []
        for (agent_id, agent_name, model, day), (calls, tin, tout, cost) in usage.items():
            counted_key = (agent_id, model, day)
            new_execution = counted_key not in self._counted_usage_keys
            self._counted_usage_keys.add(counted_key)
            rows.append(
                [
                    uuid.uuid4(),
                    self.organization_id,
                    now,
                    now,
                    agent_id,
                    agent_name,
                    day,
                    model,
                    1 if new_execution else 0,
                    calls,
                    tin,
                    tout,
                    cost,
                ]
            )
        with connection.cursor() as cursor:
            for values in rows:
                cursor.execute(USAGE_UPSERT, values)


def _providers_summed(counters: list) -> dict:
    """provider id → [provider, tokens in, tokens out, cost, calls] of the runs' provider calls."""
    summed: dict = {}
    for _recorder, _usage, providers in counters:
        for provider, tokens_in, tokens_out, cost in providers:
            entry = summed.setdefault(provider.pk, [provider, 0, 0, Decimal(0), 0])
            entry[1] += tokens_in
            entry[2] += tokens_out
            entry[3] += Decimal(cost)
            entry[4] += 1
    return summed


#: the runs' rows locked in id order, as every statement that updates several runs' rows locks
#: them (the heartbeat, the batched transitions), so that two such statements never deadlock
_LOCK_ACTIVE = (
    "SELECT id FROM crews_execution WHERE id = ANY(%s::uuid[]) AND status IN ('PREPARING', 'RUNNING') "
    "ORDER BY id FOR UPDATE"
)
_UPDATE_COUNTERS = (
    "UPDATE crews_execution e SET log_seq = e.log_seq + v.n, tokens_in = e.tokens_in + v.tin, "
    "tokens_out = e.tokens_out + v.tout, cost = e.cost + v.cost "
    "FROM unnest(%s::uuid[], %s::int[], %s::bigint[], %s::bigint[], %s::numeric[]) AS v (id, n, tin, tout, cost), lk "
    "WHERE e.id = v.id AND lk.id = v.id AND e.status IN ('PREPARING', 'RUNNING') RETURNING e.id, e.log_seq, v.n"
)


#: parameters of one statement: PostgreSQL takes at most 65,535
MAX_PARAMETERS = 30_000


def _under_parameter_limit(active: list) -> list[list]:
    """``active`` in groups of runs whose ``rows_statement`` stays under ``MAX_PARAMETERS``
    (a run's own batch is at most ``FLUSH_ENTRIES`` rows, far under it)."""
    log_fields, span_fields = len(_insert_fields(ExecutionLog)), len(_insert_fields(TraceSpan))
    groups: list[list] = []
    size = MAX_PARAMETERS
    for recorder, batch in active:
        cost = 5 + len(batch[0]) * log_fields + len(batch[1]) * span_fields
        if size + cost > MAX_PARAMETERS:
            groups.append([])
            size = 0
        groups[-1].append((recorder, batch))
        size += cost
    return groups


def rows_statement(active: list) -> tuple[str, list]:
    """``[(recorder, batch), …]`` → ONE statement writing their counters, logs and spans: the
    UPDATE of the counters, and an INSERT of the logs and one of the spans of the rows it updated
    (a log's ``seq`` counted on from the ``log_seq`` the UPDATE returned). It returns the ids of
    the runs it wrote (those still PREPARING/RUNNING)."""
    logs = [
        ExecutionLog(
            organization_id=r.organization_id,
            execution_id=r.execution_id,
            seq=i + 1,
            level=level,
            message=message,
            data=data,
            created_at=at,
        )
        for r, batch in active
        for i, (level, message, data, at) in enumerate(batch[0])
    ]
    spans = [span for _, batch in active for span in batch[1]]
    ids = [str(r.execution_id) for r, _ in active]
    params = [
        ids,
        ids,
        [len(b[0]) for _, b in active],
        [b[4] for _, b in active],
        [b[5] for _, b in active],
        [b[6] for _, b in active],
    ]
    sql = "WITH lk AS (" + _LOCK_ACTIVE + "), upd AS (" + _UPDATE_COUNTERS + ")"
    for name, model, rows, seq in (("lg", ExecutionLog, logs, True), ("sp", TraceSpan, spans, False)):
        if rows:
            cte, cte_params = _insert_joined(model, rows, seq=seq)
            sql += f", {name} AS ({cte})"
            params += cte_params
    return sql + " SELECT id FROM upd", params


def _insert_joined(model, rows: list, *, seq: bool) -> tuple[str, list]:
    """INSERT of ``rows`` (every column set) for the runs ``upd`` returned, as a CTE item. The rows
    go as ONE JSON parameter (``jsonb_to_recordset``): as placeholders, a batch of 250 runs had
    ~20,000 of them, each split out of the statement and dumped in Python."""
    fields = _insert_fields(model)
    columns = [f'"{field.column}"' for field in fields]
    record = ", ".join(f"{column} {field.db_type(connection)}" for field, column in zip(fields, columns))
    select = [
        "upd.log_seq - upd.n + r.seq" if seq and field.name == "seq" else f"r.{column}"
        for field, column in zip(fields, columns)
    ]
    encoders = [(field.column, field.attname, _json_encoder(field)) for field in fields]
    document = [{column: encode(getattr(row, attname)) for column, attname, encode in encoders} for row in rows]
    sql = (
        f'INSERT INTO "{model._meta.db_table}" ({", ".join(columns)}) SELECT {", ".join(select)} '
        f"FROM jsonb_to_recordset(%s::jsonb) AS r ({record}) JOIN upd ON upd.id = r.execution_id"
    )
    return sql, [json.dumps(document, separators=(",", ":"))]


def _json_encoder(field):
    """A column's value as ``jsonb_to_recordset`` reads it back: JSON as it is (as the field's own
    adapter writes it), times in ISO 8601, ids and decimals as their text."""
    if isinstance(field, models.JSONField):
        return _same
    if isinstance(field, models.DateTimeField):
        return _isoformat
    if isinstance(field, models.UUIDField | models.ForeignKey | models.DecimalField):
        return _text
    return _same


def _same(value):
    return value


def _isoformat(value):
    return None if value is None else value.isoformat()


def _text(value):
    return None if value is None else str(value)


_INSERT_FIELDS: dict = {}


def _insert_fields(model) -> list:
    if model not in _INSERT_FIELDS:
        meta = model._meta
        _INSERT_FIELDS[model] = [f for f in meta.local_concrete_fields if f is not meta.auto_field]
    return _INSERT_FIELDS[model]


#: the usage rollup of several runs' last batches, summed per row, only of the runs still
#: PREPARING/RUNNING once their rows were written (a run ended elsewhere counts no more usage)
_USAGE_MANY = (
    "INSERT INTO crews_usagerollup (id, organization_id, created_at, updated_at, agent_id, agent_name, "
    "day, model, executions, llm_calls, tokens_in, tokens_out, cost) "
    "SELECT gen_random_uuid(), v.org, %s, %s, v.agent_id, (array_agg(v.agent_name ORDER BY v.ord DESC))[1], "
    "v.day, v.model, sum(v.executions), sum(v.calls), sum(v.tin), sum(v.tout), sum(v.cost) "
    "FROM (VALUES {rows}) AS v (ord, execution_id, org, agent_id, agent_name, day, model, executions, calls, "
    "tin, tout, cost) JOIN crews_execution e ON e.id = v.execution_id AND e.status IN ('PREPARING', 'RUNNING') "
    "GROUP BY v.org, v.agent_id, v.day, v.model ORDER BY v.org, v.agent_id, v.day, v.model " + _USAGE_ADDED
)
_USAGE_ROW = "(%s::int, %s::uuid, %s::uuid, %s::uuid, %s::text, %s::date, %s::text, %s::int, %s::int, %s::bigint, %s::bigint, %s::numeric)"


class LastBatches:
    """The last batches of several runs as statements for a caller that sends them with its own in
    ONE round trip (a batch of ends, ``apps.runs.completion``): their counters, logs and spans
    (``rows_statement``, one per group under the parameter limit), then the usage rollup of the
    runs still running and the providers' usage (one upsert each, rows in a fixed order, so two
    such round trips never deadlock). ``settle(written)`` once they ran, ``put_back()`` if not."""

    def __init__(self, recorders: list[RunRecorder]):
        self.taken = [(recorder, recorder._take()) for recorder in recorders]
        self.active = [(r, b) for r, b in self.taken if not r.ended and _has_rows(b)]
        self._counted: list[tuple] = []
        self.sent = False  # the caller's round trip ran: outside a transaction, nothing is put back

    def statements(self) -> tuple[list[tuple[str, list]], int]:
        """The statements, and how many of them (the first) return the ids of the runs written."""
        statements = [rows_statement(group) for group in _under_parameter_limit(self.active)]
        writing = len(statements)
        rows, params, now = [], [], timezone.now()
        for recorder, (_logs, _spans, usage, *_) in self.taken:
            for (agent_id, agent_name, model, day), (calls, tin, tout, cost) in usage.items():
                if recorder.ended:
                    continue
                key = (agent_id, model, day)
                new_execution = key not in recorder._counted_usage_keys
                self._counted.append((recorder, key))
                rows.append(_USAGE_ROW)
                params += [len(rows), recorder.execution_id, recorder.organization_id, agent_id, agent_name, day]
                params += [model, 1 if new_execution else 0, calls, tin, tout, cost]
        if rows:
            statements.append((_USAGE_MANY.format(rows=", ".join(rows)), [now, now, *params]))
        providers = sorted(_providers_summed(self.taken_counters()).values(), key=lambda entry: str(entry[0].pk))
        if providers:
            statements.append(service("provider_usage_statement")([tuple(entry) for entry in providers]))
        return statements, writing

    def taken_counters(self) -> list[tuple]:
        return [(recorder, batch[2], batch[3]) for recorder, batch in self.taken]

    def settle(self, written: set[str]) -> None:
        """After the statements ran: a run whose rows were not written has ended elsewhere."""
        for recorder, _batch in self.active:
            if str(recorder.execution_id) not in written:
                recorder.ended = True
        if connection.in_atomic_block:  # counted once it commits
            transaction.on_commit(partial(_mark_counted, self._counted))
        else:
            _mark_counted(self._counted)

    def put_back(self) -> None:
        for recorder, batch in self.taken:
            recorder._put_back(batch)


def _has_rows(batch: tuple) -> bool:
    logs, spans, usage, _providers, tokens_in, tokens_out, cost = batch
    return bool(logs or spans or usage or tokens_in or tokens_out or cost)


def _mark_counted(counted: list[tuple]) -> None:
    for recorder, key in counted:
        recorder._counted_usage_keys.add(key)


def _flush_many(recorders: list[RunRecorder]) -> list[bool]:
    """Several runs' batches (``LastBatches``' statements) as ONE string the server runs as one
    transaction (inside the caller's, when it is in one); per run, False when it had ended (as
    ``flush`` returns). Rolled back, each run's entries are put back for its next flush."""
    batches = LastBatches(recorders)
    try:
        statements, writing = batches.statements()
        written: set[str] = set()
        if statements:
            with connection.cursor() as cursor:
                cursor.execute(";\n".join(sql for sql, _ in statements), [p for _, ps in statements for p in ps])
                batches.sent = True
                for index in range(writing):
                    if index:
                        cursor.nextset()
                    written |= {str(row[0]) for row in cursor.fetchall()}
        batches.settle(written)
    except Exception:
        if connection.in_atomic_block or not batches.sent:
            batches.put_back()
        raise
    finally:
        if not connection.in_atomic_block:
            connection.close()  # back to the pool until the next batch
    return [not recorder.ended for recorder in recorders]


#: the runs' flushes due at the same time, written together (``_flush_many``)
flushes = Batcher("kai-run-flush", _flush_many)
