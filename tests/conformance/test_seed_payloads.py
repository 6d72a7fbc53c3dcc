"""Seed payload fields (issue 20 item 4) received on a real hub socket (``websockets``) of a real
daphne process, produced by the real services: REST writes, a run on a real Celery worker, the
system status task."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets
from channels.db import database_sync_to_async

from apps.agents.models import Agent
from tests.conftest import jwt_for
from tests.helpers import LiveServer, WorkerProcess

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

NAMES = [
    "agent_status",
    "agent:status_changed",
    "agent_created",
    "agent_deleted",
    "inference_started",
    "inference_completed",
    "agent:execution_started",
    "agent:execution_completed",
    "metrics_update",
    "system_status",
    "system:health_changed",
]


@pytest.fixture
def platform():
    from tests.crews.conftest import queues

    server, worker = LiveServer(), WorkerProcess("-Q", queues(), "-n", "seedpayloads@%h")
    try:
        worker.wait_alive(timeout=120)
        yield server
    finally:
        worker.stop()
        server.stop()


class Inbox:
    """Hub messages by type, read as they are needed."""

    def __init__(self, socket):
        self.socket, self.seen = socket, {}

    async def get(self, type_: str, timeout: float = 30.0) -> dict:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.seen.get(type_):
            message = json.loads(await asyncio.wait_for(self.socket.recv(), deadline - loop.time()))
            self.seen.setdefault(message["type"], []).append(message)
        return self.seen[type_].pop(0)["data"]


@pytest.mark.asyncio
async def test_seed_004_and_002_payload_fields_arrive(platform, make_member):
    member = await database_sync_to_async(make_member)("admin")
    token = (await database_sync_to_async(jwt_for)(member.user))["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        websockets.connect(f"{platform.ws_url}/api/v1/ws?token={token}") as socket,
        httpx.AsyncClient(base_url=f"{platform.url}/api/v1", headers=headers, timeout=60) as http,
    ):
        inbox = Inbox(socket)
        await inbox.get("connection_established")
        await socket.send(json.dumps({"type": "subscribe", "data": {"events": NAMES}}))
        await inbox.get("subscription_confirmed")

        agent = (await http.post("/agents", json={"name": "Scout", "role": "Researcher"})).json()
        created = await inbox.get("agent_created")
        assert created["name"] == "Scout" and created["created_by"] == str(member.user.pk)
        assert created["status"] == agent["status"] and "template" in created

        await database_sync_to_async(Agent.objects.filter(pk=agent["id"]).update)(status="error", last_error="boom")
        assert (await http.post(f"/agents/{agent['id']}/restart")).status_code == 200
        status = await inbox.get("agent_status")
        assert status["old_status"] == "error" and status["new_status"] == "idle"
        assert status["reason"] == "restarted_by_user" and status["inference_count"] == 0
        assert "last_inference" in status
        changed = await inbox.get("agent:status_changed")
        assert changed["old_status"]["state"] == "error" and changed["new_status"]["state"] == "idle"
        assert set(changed["new_status"]) == {"state", "last_error", "health_score", "resource_usage"}

        ran = await http.post(
            f"/agents/{agent['id']}/execute",
            json={
                "command": {"action": "ask", "parameters": {"question": "What is 2+2?"}, "priority": "high"},
                "wait_for_completion": True,
                "timeout_ms": 60000,
            },
        )
        assert ran.status_code == 200, ran.text
        started = await inbox.get("inference_started")
        assert started["query"] and started["priority"] == "high" and "estimated_duration" in started
        execution_started = await inbox.get("agent:execution_started")
        assert execution_started["command"]["action"] == "ask"
        completed = await inbox.get("inference_completed")
        assert completed["processing_time"] >= 0 and completed["result_summary"]["tokens"] > 0
        execution_completed = await inbox.get("agent:execution_completed")
        assert execution_completed["result"]["success"] is True and execution_completed["duration"] >= 0

        from apps.system.tasks import publish_system_status

        await database_sync_to_async(publish_system_status)()
        metrics = await inbox.get("metrics_update")
        assert set(metrics["system"]) >= {"cpu_usage", "memory_usage", "active_agents", "queue_length"}
        assert set(metrics["agents"][agent["id"]]) == {
            "status",
            "inference_rate",
            "avg_response_time",
            "success_rate",
            "current_load",
        }
        system = await inbox.get("system_status")
        assert system["new_status"] and "old_status" in system and set(system["components"]) >= {"database", "workers"}
        health = await inbox.get("system:health_changed")
        assert health["new_health"]["status"] == system["new_status"] and "old_health" in health

        assert (await http.delete(f"/agents/{agent['id']}")).status_code == 204
        deleted = await inbox.get("agent_deleted")
        assert deleted == {**deleted, "name": "Scout", "deleted_by": str(member.user.pk), "reason": "user_request"}
