"""``publish`` — the only way an event enters the system (docs/events.md).

The row is written in the caller's transaction, and sent to the channel groups
``org.<id>``, ``agent.<id>``, ``execution.<id>`` once that transaction commits.

Ordering: event ids come from a sequence, and two transactions can commit in the other order
than they drew their ids, so "everything after id N" could skip an event that becomes visible
late. ``publish`` therefore takes a per-organization transaction-level advisory lock before it
draws the id; the lock is held until the caller's transaction ends, so within an organization
event ids become visible in id order and catch-up by ``after=<seq>`` never skips one. Publish
late in a transaction (after the slow work) to keep that critical section short.

Cost: the lock and the insert are one statement, and no savepoint is made inside the caller's
transaction: one round trip per event (it was four: savepoint, lock, insert, release).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import threading
import time
from contextlib import contextmanager, nullcontext
from functools import partial
from typing import Any, cast

from channels.layers import get_channel_layer
from django.db import connections, router, transaction

from apps.events.models import Event
from kai_platform.realtime.groups import agent_group, execution_group, org_group
from kai_platform.tenancy import locks

logger = logging.getLogger(__name__)


def serialize_event(event: Event) -> dict:
    return {
        "seq": event.pk,
        "id": event.pk,
        "type": event.type,
        "timestamp": event.created_at.isoformat().replace("+00:00", "Z"),
        "severity": event.severity,
        "component": event.component,
        "organization_id": str(event.organization_id),
        "agent_id": str(event.agent_id) if event.agent_id else None,
        "execution_id": str(event.execution_id) if event.execution_id else None,
        "actor_id": str(event.actor_id) if event.actor_id else None,
        "owner_id": str(event.owner_id) if event.owner_id else None,
        "data": event.data,
    }


#: called with each new Event inside the publishing transaction (apps add theirs in ready()):
#: outbound webhooks record their deliveries, approvals close when their run ends. A listener
#: filters on ``event.type`` first (publish is hot), must not raise, and does its writes in a savepoint.
#: Items are ``(listener, types, wants)``; ``types`` None means every event; ``wants`` see below.
_PUBLISH_LISTENERS: list[tuple] = []


def add_publish_listener(listener, types=None, wants=None) -> None:
    """Register ``listener(event)``. With ``types`` (event types) it is called for those only —
    and a status change whose events no listener wants commits in the same round trip as its
    statement (apps.crews: a run's claim), the organization's event lock never waiting on Python.
    Without ``types`` it is called for every event. ``wants(organization_id, types) -> bool``
    tells, before an event of ``types`` of that organization is published, whether the listener
    would act on it (e.g. whether any webhook of the organization is subscribed); asked inside
    ``listener_reads_shared`` with the read the listener itself makes (``listener_read``, same
    key), so that read is made once, before the publisher's statement instead of under its lock."""
    wanted = frozenset(types) if types is not None else None
    for index, (known, *_) in enumerate(_PUBLISH_LISTENERS):
        if known is listener:
            _PUBLISH_LISTENERS[index] = (listener, wanted, wants)
            return
    _PUBLISH_LISTENERS.append((listener, wanted, wants))


_listener_reads: contextvars.ContextVar[dict | None] = contextvars.ContextVar("kai_listener_reads", default=None)


@contextmanager
def listener_reads_shared():
    """Inside (one transaction that publishes many events, e.g. a worker's batch of run ends), a
    listener's read made through ``listener_read`` is made once per key, not once per event."""
    token = _listener_reads.set({})
    try:
        yield
    finally:
        _listener_reads.reset(token)


def listener_read(key, compute):
    """``compute()`` once per ``key`` inside ``listener_reads_shared``; outside it, every time."""
    reads = _listener_reads.get()
    if reads is None:
        return compute()
    if key not in reads:
        reads[key] = compute()
    return reads[key]


def listeners_want(types, organization_id=None) -> bool:
    """Whether some listener is called for an event of one of ``types``; given the events'
    ``organization_id``, a listener that declared ``wants`` is asked whether it would act on them."""
    for _, wanted, *declared in _PUBLISH_LISTENERS:
        if wanted is not None and wanted.isdisjoint(types):
            continue
        wants = declared[0] if declared else None
        if wants is None or organization_id is None:
            return True
        if wants(organization_id, types if wanted is None else wanted.intersection(types)):
            return True
    return False


def _id_of(obj):
    if obj is None:
        return None
    return getattr(obj, "pk", obj)


def _event(
    organization,
    type: str,
    data: dict | None = None,
    *,
    agent=None,
    execution=None,
    actor=None,
    owner=None,
    severity: str = "info",
    component: str = "",
) -> Event:
    return Event(
        organization_id=_id_of(organization),
        type=type,
        severity=severity,
        component=component,
        agent_id=_id_of(agent),
        execution_id=_id_of(execution),
        actor_id=_id_of(actor) if getattr(actor, "is_authenticated", True) else None,
        owner_id=_id_of(owner),
        data=data or {},
    )


def publish(
    organization,
    type: str,
    data: dict | None = None,
    *,
    agent=None,
    execution=None,
    actor=None,
    owner=None,
    severity: str = "info",
    component: str = "",
) -> Event:
    """Record an event and deliver it to sockets after commit. Returns the saved Event."""
    event = _event(
        organization,
        type,
        data,
        agent=agent,
        execution=execution,
        actor=actor,
        owner=owner,
        severity=severity,
        component=component,
    )
    # Inside the caller's transaction no savepoint of its own (a savepoint and its release are two
    # more round trips, and a failed insert fails the caller's transaction either way).
    with transaction.atomic(savepoint=False):
        _insert_locked([event])
        _after_insert(event)
    return event


def publish_many(events: list[dict], *, first: tuple[str, list] | None = None) -> list[Event]:
    """``publish`` of many events in ONE statement (one round trip): each item holds ``publish``'s
    arguments (``organization``, ``type``, ``data``, …). The events may belong to several
    organizations: each one's lock is taken once, all before any id is drawn (in a fixed order, so
    two bulk publishers never deadlock), so every organization's ids still become visible in id
    order. Ids follow the list's order, and so do the listeners and deliveries (each event to its
    own ``org.`` / ``agent.`` / ``execution.`` groups, after commit).

    ``first`` = ``(sql, params)``: the caller's own statement(s) (no result rows), sent in the same
    round trip just before the events' insert. Outside a transaction, and with no listener of these
    events, that round trip is the whole transaction, commit included (PostgreSQL runs the
    statements of one query string as one transaction): the caller's write and its events commit
    together, and the event lock is held only while the server runs them."""
    rows = [_event(**item) for item in events]
    if not rows:
        if first is not None:
            with connections[router.db_for_write(Event)].cursor() as cursor:
                cursor.execute(*first)
        return []
    connection = connections[router.db_for_write(Event)]
    own = connection.in_atomic_block or listeners_want({event.type for event in rows}) or first is None
    with transaction.atomic(savepoint=False) if own else nullcontext():
        _insert_locked(rows, first=first)
        for event in rows:
            _after_insert(event)
    return rows


def _after_insert(event: Event) -> None:
    """What follows the insert of every event, inside its transaction: the listeners, and the
    delivery to sockets queued for the commit."""
    for listener, wanted, *_ in _PUBLISH_LISTENERS:
        if wanted is None or event.type in wanted:
            listener(event)
    groups = [org_group(event.organization_id)]
    if event.agent_id:
        groups.append(agent_group(event.agent_id))
    if event.execution_id:
        groups.append(execution_group(event.execution_id))
    transaction.on_commit(partial(_deliver, serialize_event(event), groups), robust=True)


# --- events inserted by another app's statement ----------------------------------------------------
#
# A status change that publishes is one statement (apps.crews: the row's UPDATE, its history row and
# its events). These two halves are ``publish`` split around that statement: ``event_insert_ctes``
# is the locked insert as CTE items of the caller's statement, ``published`` the rest of ``publish``
# (listeners, delivery on commit) once the statement returned the ids. Same lock, same order
# guarantee: the lock is taken before ``nextval`` draws an id and held until the caller commits.

#: the columns ``event_insert_ctes`` fills, in order (``actor_id``/``owner_id`` stay NULL)
EVENT_INSERT_COLUMNS = (
    "organization_id",
    "type",
    "severity",
    "component",
    "agent_id",
    "execution_id",
    "data",
    "created_at",
)


def organization_lock_key_sql(column: str) -> str:
    """SQL of ``locks.organization_lock_key`` of a uuid column: its low 31 bits, minus 2**30."""
    return f"((('x' || right(replace({column}::text, '-', ''), 8))::bit(32)::int & 2147483647) - 1073741824)"


def event_insert_ctes(*, source: str, values: dict[str, str], order_by: str = "") -> str:
    """Two CTE items for a statement that already defines ``source`` (with an ``organization_id``
    column): ``kai_lock`` takes the event lock of the organization of ``source``'s rows, then
    ``kai_event`` inserts one event per row of ``source`` — ``values`` maps every column of
    ``EVENT_INSERT_COLUMNS`` but ``organization_id`` to an SQL expression over ``source`` (and the
    tables the caller adds to ``source``'s FROM list, e.g. ``"upd, steps"``; %s placeholders in
    textual order) — RETURNING ``id, created_at, type``. ``order_by`` orders the inserted rows, so
    their ids follow it. Every row of ``source`` must belong to one organization."""
    first = source.split(",")[0].strip()
    table = Event._meta.db_table
    columns = ", ".join(("id",) + EVENT_INSERT_COLUMNS)
    # the id is drawn in the SELECT list: PostgreSQL evaluates volatile output expressions after the
    # sort, so ids follow ``order_by``; and after the join with kai_lock, so after the lock
    expressions = ", ".join(
        [f"nextval(pg_get_serial_sequence('{table}', 'id'))", f"{first}.organization_id"]
        + [values[c] for c in EVENT_INSERT_COLUMNS[1:]]
    )
    return (
        f"kai_lock AS (SELECT pg_advisory_xact_lock({locks.EVENTS}, "
        f"{organization_lock_key_sql(first + '.organization_id')}) AS locked FROM {first} LIMIT 1), "
        f"kai_event AS (INSERT INTO {table} ({columns}) SELECT {expressions} "
        f"FROM {source}, kai_lock{(' ORDER BY ' + order_by) if order_by else ''} "
        f"RETURNING id, created_at, type)"
    )


def published(
    *,
    pk: int,
    created_at,
    organization,
    type: str,
    data: dict | None = None,
    agent=None,
    execution=None,
    severity: str = "info",
    component: str = "",
) -> Event:
    """The rest of ``publish`` for an event a statement made with ``event_insert_ctes``: call it
    inside that statement's transaction, in id order when it made several."""
    event = Event(
        pk=pk,
        created_at=created_at,
        organization_id=_id_of(organization),
        type=type,
        severity=severity,
        component=component,
        agent_id=_id_of(agent),
        execution_id=_id_of(execution),
        data=data or {},
    )
    event._state.adding = False
    event._state.db = router.db_for_write(Event)
    _after_insert(event)
    return event


def _insert_locked(events: list[Event], *, first: tuple[str, list] | None = None) -> None:
    """Take the advisory lock of the events' organization(s), then draw the ids and insert the
    rows: ONE statement (the locks are in a CTE the INSERT selects from, so they are held before
    ``nextval`` runs; with several rows the ids are drawn after sorting, in list order), sent after
    ``first`` (``publish_many``'s) in the same query string when given."""
    connection = connections[router.db_for_write(Event)]
    fields = [f for f in Event._meta.concrete_fields if not f.primary_key]

    def quote(column: str | None) -> str:  # a concrete field's column; the stubs allow None
        return connection.ops.quote_name(cast(str, column))

    columns = ", ".join(quote(f.column) for f in fields)
    table = quote(Event._meta.db_table)
    keys = sorted({locks.organization_lock_key(event.organization_id) for event in events})
    params: list[Any]  # the lock's ints, then each row's prepared values
    if len(keys) == 1:
        lock, params = "SELECT pg_advisory_xact_lock(%s, %s)", [locks.EVENTS, keys[0]]
    else:  # every lock, in ascending key order, in one row the INSERT joins
        lock = "SELECT count(pg_advisory_xact_lock(%s, k)) FROM unnest(%s::int[]) AS k"
        params = [locks.EVENTS, keys]
    if len(events) == 1:
        params += [f.get_db_prep_save(f.pre_save(events[0], True), connection=connection) for f in fields]
        sql = (
            f"WITH kai_lock AS ({lock}) INSERT INTO {table} ({columns}) "
            f"SELECT {', '.join(['%s'] * len(fields))} FROM kai_lock RETURNING {quote(Event._meta.pk.column)}"
        )
    else:
        typed = ", ".join(f"%s::{f.db_type(connection)}" for f in fields)
        rows = ", ".join(f"({index}, {typed})" for index in range(len(events)))
        for event in events:
            params += [f.get_db_prep_save(f.pre_save(event, True), connection=connection) for f in fields]
        names = ", ".join(f"c{i}" for i in range(len(fields)))
        sql = (
            f"WITH kai_lock AS ({lock}) INSERT INTO {table} "
            f"({quote(Event._meta.pk.column)}, {columns}) "
            f"SELECT nextval(pg_get_serial_sequence('{Event._meta.db_table}', 'id')), {names} "
            f"FROM kai_lock, (VALUES {rows}) AS rows (kai_ord, {names}) ORDER BY rows.kai_ord "
            f"RETURNING {quote(Event._meta.pk.column)}"
        )
    if first is not None:
        sql, params = f"{first[0]};\n{sql}", [*first[1], *params]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        while first is not None and cursor.nextset():  # to the events' result, the query string's last
            pass
        ids = sorted(row[0] for row in cursor.fetchall())
    for event, pk in zip(events, ids):
        event.pk = pk
        event._state.adding = False
        event._state.db = connection.alias


def _deliver(payload: dict, groups: list[str]) -> None:
    """Best effort, in commit order, off the caller's thread: a lost channel message is recovered
    by catch-up from the table."""
    if get_channel_layer() is None:
        return
    _sender().submit({"type": "kai.event", "event": payload}, groups)


class _ChannelSender:
    """One event loop thread per process that sends to the channel layer in order.

    ``async_to_sync`` per send would start a fresh event loop each time, and channels-redis keeps
    its connections per loop, so every event would open new Redis connections (docs/benchmarks.md,
    B4). Here the loop, and so its connections, live as long as the process.
    """

    def __init__(self):
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.queue: asyncio.Queue  # made by _run (on the loop's thread) before ready is set
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), name="kai-event-sender", daemon=True)
        self.thread.start()
        ready.wait()

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.queue = asyncio.Queue()
        self.loop.create_task(self._drain())
        ready.set()
        self.loop.run_forever()

    async def _drain(self) -> None:
        while True:
            message, groups = await self.queue.get()
            layer = get_channel_layer()
            try:
                for group in await _groups_with_members(layer, groups):
                    await layer.group_send(group, message)
            except Exception:  # the event is committed; sockets catch up from the table
                logger.warning("channel-layer delivery of event %s failed", message["event"]["seq"], exc_info=True)

    def submit(self, message: dict, groups: list[str]) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (message, groups))


async def _groups_with_members(layer, groups: list[str]) -> list[str]:
    """The groups that have a live member, asked in ONE pipelined round trip per Redis host.

    channels-redis's ``group_send`` costs two round trips per group even when nobody is in it (it
    prunes, then reads the group's sorted set), and most events go to three groups that nobody
    follows (``agent.<id>``, ``execution.<id>`` without a socket on them): 6 round trips per event.
    Counting the members that have not expired (the same cut ``group_send`` prunes at) first leaves
    2 for each group that has one. A layer without those internals (another backend) gets every
    group, as before. A socket joining between the count and the send catches up from the table."""
    try:
        key_of, hash_of, connection_of = layer._group_key, layer.consistent_hash, layer.connection
        cutoff = int(time.time()) - int(layer.group_expiry)
    except AttributeError:
        return list(groups)
    by_host: dict[int, list[str]] = {}
    for group in groups:
        by_host.setdefault(hash_of(group), []).append(group)
    live: set[str] = set()
    for index, members in by_host.items():
        pipe = connection_of(index).pipeline(transaction=False)
        for group in members:
            pipe.zcount(key_of(group), f"({cutoff}", "+inf")  # what group_send keeps: score > cutoff
        counts = await pipe.execute()
        live.update(group for group, count in zip(members, counts) if count)
    return [group for group in groups if group in live]


_SENDER: _ChannelSender | None = None
_SENDER_LOCK = threading.Lock()


def _sender() -> _ChannelSender:
    global _SENDER
    with _SENDER_LOCK:
        if _SENDER is None or _SENDER.pid != os.getpid():  # a forked worker child needs its own thread
            _SENDER = _ChannelSender()
        return _SENDER
