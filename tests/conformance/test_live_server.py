"""Sockets against a real daphne process: the `websockets` client, catch-up after the channel
layer dropped messages, and seed 004's JavaScript WebSocketClient under Node."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import websockets
from channels.db import database_sync_to_async
from django.db import transaction

from apps.events.services import publish
from tests.conftest import jwt_for
from tests.helpers import LiveServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

JS_DIR = Path(__file__).parent / "js"


@pytest.fixture
def deaf_server():
    """A server whose channel layer never hears this test process's publishes: every event
    the test publishes is, for the server's sockets, a message the channel layer dropped."""
    server = LiveServer(prefix_suffix="-srv", KAI_WS_RECONCILE_SECONDS="0.5")
    yield server
    server.stop()


@pytest.fixture
def server(shared_live_server):
    return shared_live_server


@database_sync_to_async
def emit(organization, type_, data):
    with transaction.atomic():
        return publish(organization, type_, data).pk


async def recv_type(socket, type_, timeout=15.0):
    while True:
        message = json.loads(await asyncio.wait_for(socket.recv(), timeout))
        if message["type"] == type_:
            return message


@pytest.mark.asyncio
async def test_rest_write_reaches_a_subscribed_socket(server, make_member):
    member = await database_sync_to_async(make_member)("admin")
    token = (await database_sync_to_async(jwt_for)(member.user))["access_token"]
    async with websockets.connect(f"{server.ws_url}/api/v1/ws?token={token}") as socket:
        await recv_type(socket, "connection_established")
        await socket.send(json.dumps({"type": "subscribe", "data": {"events": ["config.system.updated"]}}))
        await recv_type(socket, "subscription_confirmed")

        def write():
            import urllib.request

            request = urllib.request.Request(
                f"{server.url}/api/v1/config/system",
                method="POST",
                data=json.dumps({"settings": {"theme": "dark"}}).encode(),
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status

        assert await asyncio.to_thread(write) == 200
        event = await recv_type(socket, "config.system.updated")
        assert event["data"]["changed"] == ["theme"] and isinstance(event["seq"], int)


@pytest.mark.asyncio
async def test_dropped_messages_and_reconnect_lose_nothing(deaf_server, make_member):
    member = await database_sync_to_async(make_member)()
    token = (await database_sync_to_async(jwt_for)(member.user))["access_token"]
    url = f"{deaf_server.ws_url}/api/v1/ws?token={token}"
    received: list[int] = []
    async with websockets.connect(url) as socket:
        await recv_type(socket, "connection_established")
        await socket.send(json.dumps({"type": "subscribe", "data": {"events": ["note.added"]}}))
        await recv_type(socket, "subscription_confirmed")
        first = [await emit(member.organization, "note.added", {"i": i}) for i in range(10)]
        for _ in first:
            received.append((await recv_type(socket, "note.added"))["seq"])
    while_away = [await emit(member.organization, "note.added", {"i": i}) for i in range(10, 20)]
    async with websockets.connect(f"{url}&last_event_id={received[-1]}") as socket:
        await recv_type(socket, "connection_established")
        await socket.send(json.dumps({"type": "subscribe", "data": {"events": ["note.added"]}}))
        await recv_type(socket, "subscription_confirmed")
        for _ in while_away:
            received.append((await recv_type(socket, "note.added"))["seq"])
        with pytest.raises(asyncio.TimeoutError):
            await recv_type(socket, "note.added", timeout=1.5)
    assert received == first + while_away  # 0 lost, 0 duplicated, in order


def test_seed_004_javascript_client_connects_subscribes_and_receives(server, make_member):
    if shutil.which("node") is None or shutil.which("npm") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have node and npm (Debian packages nodejs, npm)")
        pytest.skip("node/npm not installed on this machine")
    if not (JS_DIR / "node_modules" / "ws").exists():
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=JS_DIR, check=True, timeout=180
        )
    member = make_member()
    token = jwt_for(member.user)["access_token"]
    client = subprocess.Popen(
        ["node", "seed004_client.js", f"{server.ws_url}/api/v1/ws", token, "note.added", "3"],
        cwd=JS_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = []
    for line in client.stdout:
        lines.append(line)
        if '"ready":true' in line:
            break
    published = [publish(member.organization, "note.added", {"i": i}).pk for i in range(3)]
    out, err = client.communicate(timeout=30)
    assert client.returncode == 0, (out, err)
    messages = [json.loads(line)["received"] for line in (lines + out.splitlines()) if line.startswith('{"received"')]
    assert messages[0]["type"] == "connection_established"
    assert [m["seq"] for m in messages if m["type"] == "note.added"] == published
