"""The sequenced event log: publish, delivery after commit, catch-up, export, visibility."""

import functools
import json
import random
import threading
import time

import pytest
from channels.layers import get_channel_layer
from django.db import connections, transaction

from apps.events.models import Event
from apps.events.services import publish
from kai_platform.realtime.groups import agent_group, org_group

pytestmark = pytest.mark.django_db


def test_publish_writes_a_row_with_seq(member):
    event = publish(member.organization, "agent.created", {"name": "a"}, actor=member.user)
    assert event.seq == event.pk and Event.objects.for_org(member.organization).count() == 1


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_delivery_happens_only_after_commit(make_member):
    import asyncio

    def in_thread(fn):
        try:
            return fn()
        finally:
            connections.close_all()

    member = await asyncio.to_thread(in_thread, make_member)
    agent_id = "11111111-1111-1111-1111-111111111111"
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(org_group(member.organization.pk), channel)
    await layer.group_add(agent_group(agent_id), channel)
    published, release = threading.Event(), threading.Event()
    result = {}

    def write(rollback: bool):
        try:
            with transaction.atomic():
                result["event"] = publish(member.organization, "agent.updated", {"v": 1}, agent=agent_id)
                published.set()
                release.wait(5)
                if rollback:
                    raise RuntimeError("rolled back")
        except RuntimeError:
            pass
        finally:
            connections.close_all()

    async def nothing_arrives():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(layer.receive(channel), 0.3)

    writer = asyncio.create_task(asyncio.to_thread(write, False))
    await asyncio.to_thread(published.wait, 5)
    await nothing_arrives()  # the transaction is still open
    release.set()
    await writer
    first = await asyncio.wait_for(layer.receive(channel), 2)
    second = await asyncio.wait_for(layer.receive(channel), 2)
    assert first["type"] == "kai.event" and first["event"]["seq"] == result["event"].pk
    assert second["event"]["seq"] == result["event"].pk  # once per group: org and agent

    published.clear()
    release.clear()
    writer = asyncio.create_task(asyncio.to_thread(write, True))
    await asyncio.to_thread(published.wait, 5)
    release.set()
    await writer
    await nothing_arrives()
    rolled_back = result["event"].pk
    assert not await asyncio.to_thread(in_thread, lambda: Event.objects.filter(pk=rolled_back).exists())


def test_list_filters_and_after(member, client_for):
    events = [publish(member.organization, f"t.{i % 2}", {"i": i}) for i in range(5)]
    client = client_for(member)
    page = client.get("/api/v1/events").json()
    assert [e["seq"] for e in page["items"]] == [e.pk for e in events]
    assert page["items"][0]["type"] == "t.0" and "timestamp" in page["items"][0]
    after = client.get(f"/api/v1/events?after={events[2].pk}").json()
    assert [e["seq"] for e in after["items"]] == [events[3].pk, events[4].pk]
    typed = client.get("/api/v1/events?type=t.1").json()
    assert {e["type"] for e in typed["items"]} == {"t.1"} and typed["total"] == 2
    both = client.get("/api/v1/events?type=t.0,t.1").json()
    assert both["total"] == 5


def test_ndjson_and_jsonl_export(member, client_for):
    for i in range(3):
        publish(member.organization, "export.me", {"i": i})
    client = client_for(member)
    for kwargs, media in [
        ({"HTTP_ACCEPT": "application/x-ndjson"}, "application/x-ndjson"),
        ({"path": "/api/v1/events?format=jsonl"}, "application/jsonl"),
        ({"path": "/api/v1/events?format=ndjson"}, "application/x-ndjson"),
    ]:
        path = kwargs.pop("path", "/api/v1/events")
        response = client.get(path, **kwargs)
        assert response.status_code == 200
        assert response["Content-Type"].startswith(media)
        lines = b"".join(response.streaming_content).decode().strip().splitlines()
        assert [json.loads(line)["data"]["i"] for line in lines] == [0, 1, 2]


def test_user_role_sees_only_own_events(make_member, client_for):
    owner = make_member()
    user = make_member("user", organization=owner.organization)
    publish(owner.organization, "by.owner", {}, actor=owner.user)
    publish(owner.organization, "by.user", {}, actor=user.user)
    publish(owner.organization, "about.user", {}, actor=owner.user, owner=user.user)
    seen_by_user = {e["type"] for e in client_for(user).get("/api/v1/events").json()["items"]}
    assert seen_by_user == {"by.user", "about.user"}
    seen_by_owner = {e["type"] for e in client_for(owner).get("/api/v1/events").json()["items"]}
    assert seen_by_owner == {"by.owner", "by.user", "about.user"}


def test_other_organizations_events_are_invisible(make_member, client_for):
    a, b = make_member(), make_member()
    event = publish(a.organization, "private", {})
    assert client_for(b).get("/api/v1/events").json()["total"] == 0
    assert client_for(b).get(f"/api/v1/events/{event.pk}").status_code == 404


def _read_by_seq_while(org, *, after, writers) -> list[int]:
    """Run ``writers`` (thread targets) while a catch-up reader pages with id > last seen; the
    reader stops once they have ended and nothing new is left. Returns the ids it read, in order."""
    done, seen = threading.Event(), []

    def reader():
        last = after
        try:
            while True:
                finished = done.is_set()
                batch = list(Event.objects.for_org(org).filter(id__gt=last).order_by("id").values_list("id", flat=True))
                if batch:
                    seen.extend(batch)
                    last = batch[-1]
                elif finished:
                    return
                time.sleep(0.001)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=target) for target in writers]
    read = threading.Thread(target=reader)
    read.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    read.join()
    return seen


class _Published:
    """Ids of the events the writers committed, gathered across their threads."""

    def __init__(self):
        self.ids: list[int] = []
        self.lock = threading.Lock()

    def writer(self, *, seed: int, count: int, write):
        """A thread target: ``count`` transactions, each ``write(i)`` (answering the events to keep)
        then a random pause before its commit, so writers' commits interleave; kept ids are added."""

        def run():
            rng = random.Random(seed)
            try:
                for i in range(count):
                    with transaction.atomic():
                        events = write(i)
                        time.sleep(rng.uniform(0, 0.01))
                    with self.lock:
                        self.ids.extend(e.pk for e in events)
            finally:
                connections.close_all()

        return run


@pytest.mark.django_db(transaction=True)
def test_catch_up_by_seq_never_skips_with_concurrent_writers(make_member):
    """Two writers whose transactions interleave (draw id, sleep, commit) while a reader pages
    with after=<last seq seen>: every event is read exactly once."""
    member = make_member()
    org = member.organization
    per_writer = 40
    writes = _Published()
    writers = [
        writes.writer(
            seed=seed, count=per_writer, write=lambda i, seed=seed: [publish(org, "race", {"w": seed, "i": i})]
        )
        for seed in (1, 2)
    ]
    seen = _read_by_seq_while(org, after=0, writers=writers)
    published = writes.ids
    assert len(published) == 2 * per_writer
    assert len(seen) == len(set(seen)), "duplicated"
    assert sorted(seen) == sorted(published), f"lost {set(published) - set(seen)}"


def test_the_lock_key_in_sql_is_the_lock_key_in_python():
    import uuid

    from django.db import connection

    from apps.events.services import organization_lock_key_sql
    from kai_platform.tenancy.locks import organization_lock_key

    ids = [uuid.uuid4() for _ in range(50)] + [
        uuid.UUID(int=0),
        uuid.UUID(int=2**128 - 1),
        uuid.UUID("00000000-0000-0000-0000-00007fffffff"),
        uuid.UUID("00000000-0000-0000-0000-000080000000"),
    ]
    with connection.cursor() as cursor:
        for value in ids:
            cursor.execute(f"SELECT {organization_lock_key_sql('%s::uuid')}", [str(value)])
            assert cursor.fetchone()[0] == organization_lock_key(value), value


@pytest.mark.django_db(transaction=True)
def test_catch_up_never_skips_events_of_status_changes(make_member):
    """Events a run's status change inserts in its own statement (apps.crews) and events of
    ``publish`` interleave in one organization while a reader pages with after=<last seq>:
    every event is read exactly once, in id order."""
    from apps.runs import services as runs
    from apps.runs.models import ExecutionKind

    member = make_member()
    org = member.organization
    rounds = 25
    executions = [
        runs.execution_create(organization=org, actor=member.user, kind=ExecutionKind.AGENT_TASK, enqueue=False)
        for _ in range(rounds)
    ]
    writes = _Published()
    publisher = writes.writer(seed=1, count=rounds * 2, write=lambda i: [publish(org, "race", {"i": i})])

    def mover():
        rng = random.Random(2)
        try:
            for execution in executions:
                with transaction.atomic():
                    assert runs.execution_claim(execution_id=execution.pk, worker="w", attempts=1)[0] == "claimed"
                    time.sleep(rng.uniform(0, 0.01))
                with transaction.atomic():
                    assert runs.execution_transition(execution_id=execution.pk, to="COMPLETED")
                    time.sleep(rng.uniform(0, 0.01))
        finally:
            connections.close_all()

    first = Event.objects.for_org(org).order_by("-id").values_list("id", flat=True).first()
    seen = _read_by_seq_while(org, after=first, writers=[publisher, mover])
    published = writes.ids
    moved = list(
        Event.objects.for_org(org).filter(id__gt=first, type__startswith="execution.").values_list("id", flat=True)
    )
    assert len(published) == rounds * 2 and len(moved) == rounds * 3
    assert len(seen) == len(set(seen)), "duplicated"
    assert sorted(seen) == sorted([*published, *moved]), f"lost {set(published) | set(moved) - set(seen)}"


def test_publish_many_inserts_events_of_several_organizations_in_one_statement(make_member):
    """One INSERT for every event; ids follow the list's order; each organization's event lock is
    held (until commit) by the publishing transaction."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from apps.events.services import publish_many
    from kai_platform.tenancy import locks

    first, second = make_member().organization, make_member().organization
    items = [
        {"organization": org, "type": "bulk.test", "data": {"i": i}, "execution": None}
        for i, org in enumerate([first, second, first, second, first])
    ]
    with transaction.atomic(), CaptureQueriesContext(connection) as ctx:
        events = publish_many(items)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT objid FROM pg_locks WHERE locktype = 'advisory' AND classid = %s AND pid = pg_backend_pid()",
                [locks.EVENTS],
            )
            held = {row[0] for row in cursor.fetchall()}
    assert len([q for q in ctx.captured_queries if "INSERT" in q["sql"]]) == 1
    assert [e.pk for e in events] == sorted(e.pk for e in events)
    assert [e.data["i"] for e in events] == list(range(5))
    rows = list(Event.objects.filter(type="bulk.test").order_by("id").values_list("organization_id", "data"))
    assert [(org, data["i"]) for org, data in rows] == [(item["organization"].pk, i) for i, item in enumerate(items)]
    expected = {locks.organization_lock_key(first.pk) & 0xFFFFFFFF, locks.organization_lock_key(second.pk) & 0xFFFFFFFF}
    assert held == expected


@pytest.mark.django_db(transaction=True)
def test_catch_up_never_skips_events_of_bulk_publishers(make_member):
    """Bulk publishes (several organizations each) interleaved with single ones while a reader
    pages one organization with after=<last seq>: every event read exactly once."""
    from apps.events.services import publish_many

    org, other = make_member().organization, make_member().organization
    writes = _Published()

    def bulk(seed, i):
        """Events of both organizations in one statement; the reader's organization's are kept."""
        items = [
            {"organization": o, "type": "race", "data": {"w": seed, "i": i}} for o in (other, org, org, other, org)
        ]
        return [e for e in publish_many(items) if e.organization_id == org.pk]

    writers = [
        writes.writer(seed=1, count=15, write=functools.partial(bulk, 1)),
        writes.writer(seed=2, count=15, write=functools.partial(bulk, 2)),
        writes.writer(seed=3, count=30, write=lambda i: [publish(org, "race", {"i": i})]),
    ]
    seen = _read_by_seq_while(org, after=0, writers=writers)
    published = writes.ids
    assert len(published) == 2 * 15 * 3 + 30
    assert len(seen) == len(set(seen)), "duplicated"
    assert sorted(seen) == sorted(published), f"lost {set(published) - set(seen)}"
