"""Close codes and reasons a real client sees (kai_platform/server): every refusal path of every
socket, through a real server process, with the ``websockets`` client."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from apps.agents.models import Agent
from apps.crews.models import Orchestration
from apps.runs.models import Execution
from tests.conftest import jwt_for
from tests.factories import make_tenant_object
from tests.helpers import LiveServer
from tests.security.tcp_proxy import TCPProxy, postgres_upstream

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio, pytest.mark.slow]  # real servers

LIMITS = {
    "KAI_WS_MAX_PER_USER": "2",
    "KAI_WS_MESSAGES_PER_MINUTE": "6",
    "KAI_WS_AUTH_TIMEOUT": "2",
    "KAI_WS_DRAIN_SECONDS": "1",
}


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        server = LiveServer(**LIMITS)
    yield server
    server.stop()


@pytest.fixture
def world(make_member):
    """An owner with an agent, a run and an orchestration: every socket has a valid target."""
    owner = make_member("owner")
    organization, user = owner.organization, owner.user
    return {
        "token": jwt_for(user)["access_token"],
        "user_token": jwt_for(make_member("user", organization=organization).user)["access_token"],
        "agent": make_tenant_object(Agent, organization, user).pk,
        "execution": make_tenant_object(Execution, organization, user).pk,
        "orchestration": make_tenant_object(Orchestration, organization, user).pk,
    }


def socket_paths(world) -> dict[str, str]:
    return {
        "hub": "/api/v1/ws",
        "console": "/api/v1/ws/console",
        "agent": f"/ws/agents/{world['agent']}",
        "mcp": "/ws/mcp",
        "run": f"/api/v1/execution-logs/{world['execution']}/stream",
        "orchestration": f"/api/v1/orchestrations/{world['orchestration']}/stream",
    }


SOCKETS = ["hub", "console", "agent", "mcp", "run", "orchestration"]


async def closed_with(socket, timeout=10.0) -> tuple[int, str, list]:
    """Read until the server closes: (code, reason, the messages received before)."""
    received = []
    try:
        while True:
            received.append(json.loads(await asyncio.wait_for(socket.recv(), timeout)))
    except websockets.ConnectionClosed as closed:
        assert closed.rcvd is not None, "the server dropped the connection without a close frame"
        return closed.rcvd.code, closed.rcvd.reason, received


def url(server, path, token=None, **query) -> str:
    if token:
        query["token"] = token
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    return f"{server.ws_url}{path}" + (f"?{qs}" if qs else "")


@pytest.mark.parametrize("name", SOCKETS)
async def test_bad_token_closes_1008(server, world, name):
    async with websockets.connect(url(server, socket_paths(world)[name], "not-a-token")) as socket:
        code, reason, messages = await closed_with(socket)
    assert code == 1008 and reason.startswith("AUTHENTICATION_FAILED"), (code, reason)
    if name != "mcp":
        assert messages[-1]["data"]["close_code"] == 1008


@pytest.mark.parametrize("name", SOCKETS)
async def test_bad_first_message_closes_1008(server, world, name):
    async with websockets.connect(url(server, socket_paths(world)[name])) as socket:
        await socket.send(json.dumps({"type": "ping"}))
        code, reason, _ = await closed_with(socket)
    assert (code, reason.split(":")[0]) == (1008, "AUTHENTICATION_FAILED")
    async with websockets.connect(url(server, socket_paths(world)[name])) as socket:
        await socket.send(json.dumps({"type": "auth", "token": "expired.or.forged"}))
        code, reason, _ = await closed_with(socket)
    assert (code, reason.split(":")[0]) == (1008, "AUTHENTICATION_FAILED")


async def test_no_credential_within_the_window_closes_1008(server, world):
    async with websockets.connect(url(server, "/api/v1/ws")) as socket:
        code, reason, _ = await closed_with(socket)
    assert (code, reason.split(":")[0]) == (1008, "AUTHENTICATION_FAILED")


@pytest.mark.parametrize("name", SOCKETS)
async def test_foreign_origin_closes_1008(server, world, name):
    async with websockets.connect(
        url(server, socket_paths(world)[name], world["token"]), origin="https://evil.example"
    ) as socket:
        code, reason, _ = await closed_with(socket)
    assert (code, reason.split(":")[0]) == (1008, "PERMISSION_DENIED")


@pytest.mark.parametrize("name", SOCKETS)
async def test_oversize_message_closes_1009(server, world, name):
    async with websockets.connect(url(server, socket_paths(world)[name], world["token"])) as socket:
        await socket.recv()  # the hello
        await socket.send(json.dumps({"type": "ping", "pad": "x" * 70_000}))
        code, reason, _ = await closed_with(socket)
    assert (code, reason.split(":")[0]) == (1009, "MESSAGE_TOO_LARGE")


@pytest.mark.parametrize("name, target", [("agent", "agent"), ("run", "execution"), ("orchestration", "orchestration")])
async def test_unknown_target_closes_1008(server, world, name, target):
    path = socket_paths({**world, target: "00000000-0000-0000-0000-000000000000"})[name]
    async with websockets.connect(url(server, path, world["token"])) as socket:
        code, reason, _ = await closed_with(socket)
    expected = "AGENT_NOT_FOUND" if name == "agent" else "NOT_FOUND"
    assert (code, reason.split(":")[0]) == (1008, expected)


async def test_console_refuses_a_plain_member_1008(server, world):
    async with websockets.connect(url(server, "/api/v1/ws/console", world["user_token"])) as socket:
        code, reason, _ = await closed_with(socket)
    assert (code, reason.split(":")[0]) == (1008, "PERMISSION_DENIED")


@pytest.mark.parametrize("name", ["hub", "agent", "mcp"])
async def test_too_many_connections_closes_1008(server, world, name):
    path = socket_paths(world)[name]
    async with (
        websockets.connect(url(server, path, world["token"])) as first,
        websockets.connect(url(server, path, world["token"])) as second,
    ):
        await first.recv(), await second.recv()
        async with websockets.connect(url(server, path, world["token"])) as third:
            code, reason, messages = await closed_with(third)
    assert (code, reason.split(":")[0]) == (1008, "CONNECTION_LIMIT_EXCEEDED")


async def test_message_rate_closes_1008(server, world):
    async with websockets.connect(url(server, "/api/v1/ws", world["token"])) as socket:
        await socket.recv()
        for _ in range(8):
            await socket.send(json.dumps({"type": "ping"}))
        code, reason, messages = await closed_with(socket)
    assert (code, reason.split(":")[0]) == (1008, "RATE_LIMIT_EXCEEDED")
    assert "rate_limit_warning" in {m["type"] for m in messages}


async def test_normal_closes_are_1000(server, world):
    async with websockets.connect(url(server, "/api/v1/ws", world["token"])) as socket:
        await socket.recv()
        await socket.send(json.dumps({"type": "disconnect"}))
        code, reason, _ = await closed_with(socket)
    assert (code, reason.split(":")[0]) == (1000, "NORMAL_CLOSURE")
    socket = await websockets.connect(url(server, "/api/v1/ws", world["token"]))
    await socket.recv()
    await socket.close(1000, "bye")
    assert socket.close_code == 1000  # the server answers the client's close in kind


async def test_shutdown_warns_then_closes_1001(world):
    server = await asyncio.to_thread(LiveServer, **LIMITS)
    try:
        hub = await websockets.connect(url(server, "/api/v1/ws", world["token"]))
        agent = await websockets.connect(url(server, socket_paths(world)["agent"], world["token"]))
        await hub.recv(), await agent.recv()
        stopping = asyncio.create_task(asyncio.to_thread(server.stop))
        hub_code, hub_reason, hub_messages = await closed_with(hub)
        agent_code, _, agent_messages = await closed_with(agent)
        await stopping
    finally:
        server.stop()
    assert (hub_code, hub_reason) == (1001, "SERVER_SHUTDOWN") and agent_code == 1001
    warning = next(m for m in hub_messages if m["type"] == "disconnect_warning")
    assert warning["data"]["reason"] == "server_shutdown" and warning["data"]["seconds_left"] == 1.0
    assert any(m["type"] == "disconnect_warning" for m in agent_messages)


#: a TCP forwarder in a process of its own (127.0.0.1:<printed port> → argv host:port); killing it cuts every connection


@pytest.mark.parametrize("name", ["hub", "agent", "run"])
async def test_a_server_fault_closes_1011(world, name):
    """The database goes away under a running server: a socket whose credential must be read from it
    is closed 1011 INTERNAL_ERROR (a fault of the server, not of the client's credential)."""
    import httpx
    from django.db import connection

    database = connection.settings_dict
    # the TCP or Unix-socket server (the embedded PostgreSQL listens on a socket) behind a proxy
    proxy = TCPProxy(*postgres_upstream(database["HOST"], database["PORT"]))
    proxy.start()
    server = await asyncio.to_thread(
        LiveServer,
        **LIMITS,
        KAI_DB_POOL_TIMEOUT="1",
        DATABASE_URL=f"postgres://{database['USER']}@127.0.0.1:{proxy.port}/{database['NAME']}",
    )
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:  # the pool holds connections
            assert (
                await client.get("/api/v1/agents", headers={"Authorization": f"Bearer {world['token']}"})
            ).status_code == 200
        proxy.stop()  # the database goes away: open connections cut, new ones reset
        # a credential the server has not seen (nothing cached): it must be read from the database
        async with websockets.connect(
            url(server, socket_paths(world)[name], world["user_token"]), open_timeout=30
        ) as socket:
            code, reason, _ = await closed_with(socket, timeout=30)
    finally:
        proxy.close()
        await asyncio.to_thread(server.stop)
    assert (code, reason) == (1011, "INTERNAL_ERROR")
