"""socket.io for seed 002 clients (apps/events/sio.py), driven by npm socket.io-client under Node
against two real server processes: an event caused through one reaches a client of the other."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import pytest_asyncio
from channels.db import database_sync_to_async

from tests.conftest import jwt_for
from tests.helpers import LiveServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio, pytest.mark.slow]

JS_DIR = Path(__file__).parent / "js"


def _node_ready() -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have node and npm (.ci/run installs them)")
        pytest.skip("node/npm not installed on this machine")
    if not (JS_DIR / "node_modules" / "socket.io-client").exists():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=JS_DIR, check=True, timeout=300
        )


class Node:
    """The socket.io-client driver (js/socketio_driver.js): commands in, what clients heard out."""

    def __init__(self, process):
        self.process, self.heard, self.unread = process, [], []

    @classmethod
    async def start(cls):
        process = await asyncio.create_subprocess_exec(
            "node", "socketio_driver.js", cwd=JS_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        return cls(process)

    async def send(self, **command):
        self.process.stdin.write((json.dumps(command) + "\n").encode())
        await self.process.stdin.drain()

    async def wait(self, name, event, *, ack=False, timeout=15.0):
        """The first line of ``name`` about ``event`` not returned yet (lines are kept as they come)."""

        def matches(line):
            return line.get("name") == name and line.get("event") == event and bool(line.get("ack")) == ack

        for line in self.unread:
            if matches(line):
                self.unread.remove(line)
                return line["args"]

        async def read():
            while True:
                line = json.loads(await self.process.stdout.readline() or b'{"eof": true}')
                if line.get("eof"):
                    raise AssertionError(f"node exited; heard {self.heard}")
                self.heard.append(line)
                if matches(line):
                    return line["args"]
                self.unread.append(line)

        return await asyncio.wait_for(read(), timeout)

    async def stop(self):
        self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 5)
        except TimeoutError:
            self.process.kill()


@pytest_asyncio.fixture
async def node():
    await asyncio.to_thread(_node_ready)
    driver = await Node.start()
    yield driver
    await driver.stop()


@pytest.fixture(scope="module")
def servers(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        first, second = (LiveServer(KAI_WS_MESSAGES_PER_MINUTE="5", KAI_WS_MAX_PER_USER="2") for _ in range(2))
    yield first, second
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:  # both stop at once: each takes seconds on a busy machine
        list(pool.map(LiveServer.stop, (first, second)))


async def test_seed002_socketio_across_two_processes(servers, node, make_member):
    first, second = servers
    owner = await database_sync_to_async(make_member)("owner")
    plain = await database_sync_to_async(make_member)("user", organization=owner.organization)
    token = (await database_sync_to_async(jwt_for)(owner.user))["access_token"]
    plain_token = (await database_sync_to_async(jwt_for)(plain.user))["access_token"]

    await node.send(op="connect", name="x", url=first.url, auth={"token": token})
    user = (await node.wait("x", "authenticated"))[0]
    assert user["email"] == owner.user.email and user["role"] == "owner"
    await node.send(op="connect", name="y", url=second.url, auth={"token": token})
    await node.wait("y", "authenticated")

    change = {"type": "system_setting", "changes": {"theme": "dark"}, "description": "via socket.io"}
    await node.send(op="emit", name="y", event="system:modify", args=[change], ack=True)
    answer = (await node.wait("y", "system:modify", ack=True))[0]
    assert answer["success"] is True and answer["modification"]["type"] == "system_setting", answer
    updated = (await node.wait("x", "system:architecture_updated"))[0]  # heard on the other process
    assert isinstance(updated["seq"], int)

    missing = {"agent_id": str(uuid.uuid4()), "command": {"action": "run"}}
    await node.send(op="emit", name="y", event="agent:execute", args=[missing], ack=True)
    assert (await node.wait("y", "agent:execute", ack=True))[0]["status"] == 404
    error = (await node.wait("y", "error"))[0]
    assert error["event"] == "agent:execute" and error["status"] == 404

    await node.send(op="connect", name="u", url=second.url, auth={"token": plain_token})
    await node.wait("u", "authenticated")
    await node.send(op="emit", name="u", event="system:modify", args=[change], ack=True)
    refused = (await node.wait("u", "system:modify", ack=True))[0]
    assert refused["status"] == 403 and refused["error_code"], refused  # the REST route's role check


async def test_long_polling_and_positional_arguments(servers, node, make_member):
    first, _ = servers
    owner = await database_sync_to_async(make_member)("owner")
    token = (await database_sync_to_async(jwt_for)(owner.user))["access_token"]
    await node.send(op="connect", name="p", url=first.url, auth={"token": token}, transports=["polling"])
    await node.wait("p", "authenticated")
    await node.send(op="emit", name="p", event="agent:subscribe", args=["agent-7"], ack=True)
    assert (await node.wait("p", "agent:subscribe", ack=True))[0] == {"agents": ["agent-7"]}
    await node.send(op="emit", name="p", event="workflow:execute", args=[str(uuid.uuid4()), {"x": 1}], ack=True)
    assert (await node.wait("p", "workflow:execute", ack=True))[0]["status"] == 404
    for _ in range(4):  # 5 client events a minute on these servers: the 6th is dropped
        await node.send(op="emit", name="p", event="agent:unsubscribe", args=["agent-7"], ack=True)
    answers = [(await node.wait("p", "agent:unsubscribe", ack=True))[0] for _ in range(4)]
    assert answers[:3] == [{"agents": []}] * 3 and answers[3]["error_code"] == "RATE_LIMIT_EXCEEDED"


async def test_refusals_are_connect_errors_with_the_seed_error_body(servers, node, make_member):
    """What a socket.io client sees when it is refused: ``connect_error`` (never ``connect``), its
    ``err.data`` seed 002's error body, and no automatic reconnection (``socket.active`` false)."""
    first, _ = servers
    owner = await database_sync_to_async(make_member)("owner")
    token = (await database_sync_to_async(jwt_for)(owner.user))["access_token"]

    async def refused(name, **connect):
        await node.send(op="connect", name=name, url=first.url, **connect)
        message, data, active = await node.wait(name, "connect_error")
        assert active is False and isinstance(message, str) and message == data["error"]["message"]
        assert data["success"] is False and data["error"]["timestamp"]
        return data["error"]

    assert (await refused("none", auth={}))["code"] == "AUTH_001"
    assert (await refused("bad", auth={"token": "not-a-token"}))["code"] == "AUTH_001"
    assert (await refused("polling", auth={"token": "x"}, transports=["polling"]))["code"] == "AUTH_001"
    for name in ("a", "b"):  # KAI_WS_MAX_PER_USER=2 on these servers
        await node.send(op="connect", name=name, url=first.url, auth={"token": token})
        await node.wait(name, "authenticated")
    limit = await refused("c", auth={"token": token})
    assert limit["code"] == "GENERAL_002" and limit["details"] == {"limit": "user"}
    await node.send(op="close", name="a")
    await node.wait("a", "disconnect")
    await asyncio.sleep(0.5)  # the lease is released when the server sees the disconnect
    await node.send(op="connect", name="d", url=first.url, auth={"token": token})
    await node.wait("d", "authenticated")
    assert not [
        line
        for line in node.heard
        if line.get("event") == "connect" and line["name"] in ("none", "bad", "polling", "c")
    ]
