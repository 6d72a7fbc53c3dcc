"""The dashboard page, its JSON endpoints and the console socket: who sees what."""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import transaction

from apps.console.services import console_token_issue
from apps.events.services import publish
from apps.runs.models import Execution, ExecutionStatus, UsageRollup
from kai_platform.asgi import application
from tests.console.conftest import fast_user


def _run(member, name, status=ExecutionStatus.COMPLETED, **fields):
    return Execution.objects.create(
        organization=member.organization, kind="crew", run_name=name, status=status, **fields
    )


def _page_data(response) -> dict:
    html = response.content.decode()
    start = html.index('id="console-data" type="application/json">') + len('id="console-data" type="application/json">')
    return json.loads(html[start : html.index("</script>", start)])


@pytest.mark.django_db
class TestPage:
    def test_anonymous_goes_to_login_and_others_get_403(self, client, make_member):
        response = client.get("/dashboard")
        assert response.status_code == 302 and response["Location"].startswith("/dashboard/login?next=/dashboard")
        assert client.get("/dashboard/data").status_code == 401
        developer = make_member("developer")
        client.force_login(developer.user)
        assert client.get("/dashboard").status_code == 403
        assert client.get("/dashboard/data").status_code == 403
        assert client.get("/dashboard/token").status_code == 403

    def test_owner_sees_only_their_organization(self, client, make_member):
        mine, theirs = make_member("owner"), make_member("owner")
        _run(mine, "my-run")
        _run(theirs, "their-run", status=ExecutionStatus.FAILED, error="boom")
        UsageRollup.objects.create(organization=theirs.organization, day=_today(), model="m", cost="1.5")
        client.force_login(mine.user)
        response = client.get("/dashboard")
        assert response.status_code == 200
        data = _page_data(response)
        assert [r["run_name"] for r in data["runs"]] == ["my-run"]
        assert data["failures"]["count"] == 0 and data["cost_today"] == []
        assert client.get(f"/dashboard/runs/{Execution.objects.get(run_name='their-run').pk}").status_code == 404
        assert "/admin/" not in response.content.decode().split("<main>")[0]  # no admin link for non-staff
        assert all(not w["name"].startswith("celery") for w in data["health"]["workers"])

    def test_staff_see_every_organization_and_can_narrow(self, client, make_member):
        a, b = make_member("owner"), make_member("owner")
        _run(a, "run-a")
        failed = _run(b, "run-b", status=ExecutionStatus.FAILED, error="kaput")
        Execution.objects.filter(pk=failed.pk).update(completed_at=failed.created_at)
        UsageRollup.objects.create(organization=b.organization, day=_today(), model="m", cost="2.25", tokens_in=7)
        client.force_login(fast_user(is_staff=True))
        data = client.get("/dashboard/data").json()
        assert {r["run_name"] for r in data["runs"]} == {"run-a", "run-b"}
        assert data["failures"]["count"] == 1 and data["failures"]["latest"][0]["error"] == "kaput"
        assert data["cost_today"] == [
            {
                "organization_id": str(b.organization.pk),
                "organization": b.organization.slug,
                "name": b.organization.name,
                "cost": "2.250000",
                "tokens": 7,
                "llm_calls": 0,
                "executions": 0,
            }
        ]
        assert {q["queue"] for q in data["health"]["queues"]} >= {f"{_prefix()}.runs"}
        narrowed = client.get("/dashboard/data", {"organization": a.organization.slug}).json()
        assert [r["run_name"] for r in narrowed["runs"]] == ["run-a"]
        page = client.get("/dashboard")
        assert page.status_code == 200 and 'href="/admin/"' in page.content.decode()

    def test_running_runs_come_first(self, client, make_member):
        owner = make_member("owner")
        running = _run(owner, "long-running", status=ExecutionStatus.RUNNING)
        for i in range(30):
            _run(owner, f"done-{i}")
        client.force_login(owner.user)
        runs = client.get("/dashboard/data").json()["runs"]
        assert runs[0]["id"] == str(running.pk) and len(runs) == 25

    def test_queue_depth_counts_every_priority_list(self, client, make_member):
        from django.conf import settings
        from django_redis import get_redis_connection

        redis = get_redis_connection("default")
        keyprefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"]
        queue = f"{_prefix()}.runs"
        keys = [f"{keyprefix}{queue}", f"{keyprefix}{queue}\x06\x163", f"{keyprefix}{queue}\x06\x169"]
        client.force_login(fast_user(is_staff=True))

        def depth():
            return {q["queue"]: q["depth"] for q in client.get("/dashboard/data").json()["health"]["queues"]}[queue]

        before = depth()  # earlier tests may have left a run queued
        try:
            for key in keys:
                redis.rpush(key, "m1", "m2")
            assert depth() - before == 6
        finally:
            redis.delete(*keys)

    def test_console_login_page_signs_owners_in(self, client, make_member):
        owner = make_member("owner")
        owner.user.set_password("owner-pass-123")
        owner.user.save()
        response = client.post(
            "/dashboard/login", {"username": owner.user.email, "password": "owner-pass-123", "next": "/dashboard"}
        )
        assert response.status_code == 302 and response["Location"] == "/dashboard"
        assert client.get("/dashboard").status_code == 200

    def test_static_files_are_served(self, client):
        response = client.get("/static/console/dashboard.js")
        assert response.status_code == 200
        assert b"kaiConsole" in b"".join(response.streaming_content if response.streaming else [response.content])


def _today():
    from django.utils import timezone

    return timezone.now().date()


def _prefix():
    from django.conf import settings

    return settings.KAI_REDIS_PREFIX


# --- the console socket -------------------------------------------------------------------------


async def _connect(token, query=""):
    communicator = WebsocketCommunicator(application, f"/api/v1/ws/console?token={token}{query}")
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def _until(communicator, type_, timeout=5):
    while True:
        message = await communicator.receive_json_from(timeout=timeout)
        if message["type"] == type_:
            return message


@database_sync_to_async
def _emit(organization, status, execution_id):
    with transaction.atomic():
        return publish(
            organization,
            f"execution.{status.lower()}",
            {"execution_id": execution_id, "status": status},
            execution=execution_id,
        ).pk


@database_sync_to_async
def _token(user):
    return console_token_issue(user=user)["token"]


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_staff_socket_hears_every_organization(make_member):
    a = await database_sync_to_async(make_member)("owner")
    b = await database_sync_to_async(make_member)("owner")
    staff = await database_sync_to_async(fast_user)(is_staff=True)  # a member of no organization
    socket = await _connect(await _token(staff))
    hello = await _until(socket, "connection_established")
    assert hello["data"]["scope"] == "platform"
    await socket.send_json_to({"type": "subscribe", "data": {"events": ["execution_status"]}})
    await _until(socket, "subscription_confirmed")
    ids = ["7d3c3c8e-0000-4000-8000-00000000000a", "7d3c3c8e-0000-4000-8000-00000000000b"]
    await _emit(a.organization, "RUNNING", ids[0])
    await _emit(b.organization, "COMPLETED", ids[1])
    got = [(await _until(socket, "execution_status"))["data"] for _ in range(2)]
    assert [(m["execution_id"], m["status"]) for m in got] == [(ids[0], "RUNNING"), (ids[1], "COMPLETED")]
    await socket.send_json_to({"type": "command", "data": {"command": "restart", "agent_id": "x"}})
    assert (await _until(socket, "connection_error"))["data"]["error_code"] == "PERMISSION_DENIED"
    await socket.disconnect()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_owner_socket_hears_only_their_organization_and_others_are_refused(make_member):
    mine = await database_sync_to_async(make_member)("owner")
    other = await database_sync_to_async(make_member)("owner")
    socket = await _connect(await _token(mine.user), f"&organization={mine.organization.pk}")
    hello = await _until(socket, "connection_established")
    assert hello["data"]["scope"] == "organization"
    assert hello["data"]["organization_id"] == str(mine.organization.pk)
    await socket.send_json_to({"type": "subscribe", "data": {"events": ["execution_status"]}})
    await _until(socket, "subscription_confirmed")
    await _emit(other.organization, "FAILED", "7d3c3c8e-0000-4000-8000-00000000000c")
    await _emit(mine.organization, "COMPLETED", "7d3c3c8e-0000-4000-8000-00000000000d")
    message = await _until(socket, "execution_status")
    assert message["data"]["execution_id"] == "7d3c3c8e-0000-4000-8000-00000000000d"
    await socket.disconnect()

    developer = await database_sync_to_async(make_member)("developer")
    refused = await _connect(await _token(developer.user))
    error = await _until(refused, "connection_error")
    assert error["data"]["error_code"] == "PERMISSION_DENIED"
    await refused.disconnect()
