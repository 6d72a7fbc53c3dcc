"""Seed 004 events that only the server sends — system_alert, maintenance_mode, disconnect_warning,
connection_pool_info — and the connection rate and client headers, through a real server process."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
import websockets
from channels.db import database_sync_to_async

from apps.accounts.models import User
from tests.conftest import jwt_for
from tests.helpers import LiveServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio, pytest.mark.slow]  # real servers

ENV = {"KAI_WS_CONNECTS_PER_MINUTE": "4", "KAI_WS_EXPIRY_WARNING_SECONDS": "895", "KAI_WS_DRAIN_SECONDS": "0"}


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        server = LiveServer(**ENV)
    yield server
    server.stop()


@pytest.fixture
def people(make_member):
    owner = make_member("owner")
    plain = make_member("user")  # another organization; role user sees broadcasts too
    staff = User.objects.create(email=f"ops{uuid.uuid4().hex[:8]}@example.com", is_staff=True)
    return {
        "owner": owner,
        "plain": plain,
        "owner_token": jwt_for(owner.user)["access_token"],
        "plain_token": jwt_for(plain.user)["access_token"],
        "staff_token": jwt_for(staff)["access_token"],
    }


async def next_of(socket, type_, timeout=10.0):
    while True:
        message = json.loads(await asyncio.wait_for(socket.recv(), timeout))
        if message["type"] == type_:
            return message


async def closed(socket, timeout=10.0):
    seen = []
    try:
        while True:
            seen.append(json.loads(await asyncio.wait_for(socket.recv(), timeout)))
    except websockets.ConnectionClosed as exc:
        return exc.rcvd.code, exc.rcvd.reason, seen


class Answer:
    def __init__(self, status, headers, body):
        self.status_code, self.headers, self.text = status, headers, body.decode()

    def json(self):
        return json.loads(self.text)


def api(server, method, path, token, json_body=None) -> Answer:
    """One request with urllib (no extra client library): the status, headers and body as they are."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        f"{server.url}/api/v1/{path}",
        method=method,
        data=json.dumps(json_body).encode() if json_body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return Answer(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        return Answer(error.code, error.headers, error.read())


async def test_operator_alert_reaches_every_organization(server, people):
    hub = f"{server.ws_url}/api/v1/ws?token="
    async with (
        websockets.connect(hub + people["owner_token"]) as owner,
        websockets.connect(hub + people["plain_token"]) as plain,
    ):
        for socket in (owner, plain):
            await socket.send(json.dumps({"type": "subscribe", "data": {"events": ["system_alerts"]}}))
            await next_of(socket, "subscription_confirmed")
        refused = await asyncio.to_thread(
            api, server, "POST", "system/alerts", people["owner_token"], json_body={"message": "x"}
        )
        assert refused.status_code == 403  # an organization owner is not a platform operator
        response = await asyncio.to_thread(
            api,
            server,
            "POST",
            "system/alerts",
            people["staff_token"],
            json_body={
                "severity": "error",
                "type": "service_unavailable",
                "message": "Database connection lost",
                "affected_components": ["database"],
                "estimated_resolution": "2030-01-15T10:45:00Z",
            },
        )
        assert response.status_code == 201, response.text
        for socket in (owner, plain):
            alert = (await next_of(socket, "system_alert"))["data"]
            assert alert["alert_id"] == response.json()["alert_id"] and alert["severity"] == "error"
            assert alert["type"] == "service_unavailable" and alert["affected_components"] == ["database"]
            assert alert["status"] == "investigating" and alert["estimated_resolution"].startswith("2030-01-15")


async def test_maintenance_refuses_runs_and_tells_sockets(server, people):
    owner = people["owner"]
    agent = await database_sync_to_async(_agent)(owner)
    task = {"description": "Say hi", "expected_output": "hi"}
    async with websockets.connect(f"{server.ws_url}/api/v1/ws?token={people['owner_token']}") as socket:
        await next_of(socket, "connection_established")  # not subscribed: maintenance reaches it anyway
        on = await asyncio.to_thread(
            api,
            server,
            "POST",
            "system/maintenance",
            people["staff_token"],
            json_body={
                "enabled": True,
                "message": "Database upgrade",
                "until": "2999-01-01T00:00:00Z",
                "disconnect_seconds": 1,
            },
        )
        assert on.status_code == 200 and on.json()["enabled"] is True, on.text
        notice = (await next_of(socket, "maintenance_mode"))["data"]
        assert notice["enabled"] is True and notice["message"] == "Database upgrade"
        warning = (await next_of(socket, "disconnect_warning"))["data"]
        if warning["reason"] == "token_expiry":  # this module's servers warn ~5 s after a token is made
            warning = (await next_of(socket, "disconnect_warning"))["data"]
        assert warning["reason"] == "maintenance" and warning["seconds_left"] == 1.0
        code, reason, _ = await closed(socket)
        assert code == 1001 and reason.startswith("MAINTENANCE")
    refused = await asyncio.to_thread(
        api, server, "POST", f"agents/{agent}/task", people["owner_token"], json_body=task
    )
    assert refused.status_code == 503 and refused.json()["code"] == "GENERAL_004", refused.text
    assert int(refused.headers["Retry-After"]) > 3600 and "Database upgrade" in refused.json()["detail"]
    state = await asyncio.to_thread(api, server, "GET", "system/maintenance", people["plain_token"])
    assert state.json()["enabled"] is True
    off = await asyncio.to_thread(
        api, server, "POST", "system/maintenance", people["staff_token"], json_body={"enabled": False}
    )
    assert off.json()["enabled"] is False
    accepted = await asyncio.to_thread(
        api, server, "POST", f"agents/{agent}/task", people["owner_token"], json_body=task
    )
    assert accepted.status_code == 202, accepted.text


def _agent(member):
    from tests.crews.conftest import make_agent

    return str(make_agent(member).pk)


async def test_token_expiry_is_warned_before_the_close(server, people):
    async with websockets.connect(f"{server.ws_url}/api/v1/ws?token={people['owner_token']}") as socket:
        warning = (await next_of(socket, "disconnect_warning"))["data"]
    assert warning["reason"] == "token_expiry" and warning["close_code"] == 1008
    assert 880 < warning["seconds_left"] <= 895 and "Refresh" in warning["recommended_action"]


async def test_pool_info_on_request_and_on_subscription(server, people):
    url = f"{server.ws_url}/api/v1/ws?token={people['owner_token']}"
    async with websockets.connect(url) as first, websockets.connect(url) as second:
        await next_of(second, "connection_established")
        await first.send(
            json.dumps({"type": "subscribe", "data": {"events": ["agent_status", "connection_pool_info"]}})
        )
        info = (await next_of(first, "connection_pool_info"))["data"]
        assert info["active_connections"] == 2 and info["max_connections"] == 5
        assert info["pool_utilization"] == 0.4 and info["pool_id"].startswith("pool_")
        await second.send(json.dumps({"type": "connection_pool_info"}))
        assert (await next_of(second, "connection_pool_info"))["data"]["active_connections"] == 2


async def test_connection_rate_closes_1008_and_headers_reach_the_console(server, people, client):
    url = f"{server.ws_url}/api/v1/ws?token={people['plain_token']}"
    headers = {"X-Client-Fingerprint": "fp-123", "X-Client-Version": "dash/2.1"}
    async with websockets.connect(url, additional_headers=headers) as socket:
        await next_of(socket, "connection_established")
        rows = await database_sync_to_async(_console_sockets)(client)
        mine = [row for row in rows if row["user"] == people["plain"].user.email]
        assert [(r["client_fingerprint"], r["client_version"]) for r in mine] == [("fp-123", "dash/2.1")]
    for _ in range(3):  # 4 a minute per user: the 5th is refused
        async with websockets.connect(url) as socket:
            await next_of(socket, "connection_established")
    async with websockets.connect(url) as socket:
        code, reason, messages = await closed(socket)
    assert code == 1008 and reason.startswith("RATE_LIMIT_EXCEEDED")
    assert messages[-1]["data"]["retry_after"] == 60


def _console_sockets(client) -> list[dict]:
    staff = User.objects.create(email=f"ops{uuid.uuid4().hex[:8]}@example.com", is_staff=True)
    client.force_login(staff)
    return client.get("/dashboard/data").json()["sockets"]["items"]
