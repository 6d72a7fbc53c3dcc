"""Run streams over sockets: execution logs (seed 001) and orchestration runs (seed 003), replayed
from the start, then live, closing when the run ends — against a real worker."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from kai_platform.asgi import application
from tests.conftest import jwt_for

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def runs_worker(celery_worker_process):
    """The shared real worker (default + runs queues)."""
    return celery_worker_process


@database_sync_to_async
def setup(make_member):
    from apps.agents.services import agent_create

    member = make_member()
    agents = [
        agent_create(
            organization=member.organization,
            actor=member.user,
            data={"name": f"A{i}", "role": "Helper", "goal": "Help", "backstory": "Kind."},
        )
        for i in range(2)
    ]
    return member, agents, jwt_for(member.user)["access_token"]


@database_sync_to_async
def start_task(member, agent):
    from apps.runs import services
    from apps.runs.models import ExecutionKind

    return services.execution_create(
        organization=member.organization,
        actor=member.user,
        kind=ExecutionKind.AGENT_TASK,
        agent=agent,
        run_name="stream me",
        definition={"name": "t", "description": "Explain sockets", "expected_output": "A line"},
    )


async def collect_until_closed(socket, timeout=60):
    messages = []
    while True:
        output = await socket.receive_output(timeout)
        if output["type"] == "websocket.close":
            return messages, output.get("code")
        import json

        messages.append(json.loads(output["text"]))


async def test_execution_log_stream_from_start_to_close(make_member, runs_worker):
    member, agents, token = await setup(make_member)
    execution = await start_task(member, agents[0])
    socket = WebsocketCommunicator(application, f"/api/v1/execution-logs/{execution.pk}/stream?token={token}")
    assert (await socket.connect())[0]
    messages, code = await collect_until_closed(socket)
    assert code == 1000
    assert messages[0]["type"] == "status"
    logs = [m for m in messages if m["type"] == "log"]
    assert logs and [m["seq"] for m in logs] == sorted({m["seq"] for m in logs})
    assert messages[-1]["type"] == "complete" and messages[-1]["data"]["status"] == "COMPLETED"

    # a late reader gets the same lines from the table, and ?after= skips what it saw
    late = WebsocketCommunicator(application, f"/api/v1/execution-logs/{execution.pk}/stream?token={token}")
    assert (await late.connect())[0]
    replay, code = await collect_until_closed(late)
    assert [m["seq"] for m in replay if m["type"] == "log"] == [m["seq"] for m in logs] and code == 1000
    resumed = WebsocketCommunicator(
        application, f"/api/v1/execution-logs/{execution.pk}/stream?token={token}&after={logs[0]['seq']}"
    )
    assert (await resumed.connect())[0]
    rest, _ = await collect_until_closed(resumed)
    assert [m["seq"] for m in rest if m["type"] == "log"] == [m["seq"] for m in logs[1:]]


async def test_another_organizations_run_is_refused(make_member):
    member, agents, _ = await setup(make_member)
    execution = await start_task(member, agents[0])
    stranger = await database_sync_to_async(make_member)()
    token = await database_sync_to_async(lambda: jwt_for(stranger.user)["access_token"])()
    socket = WebsocketCommunicator(application, f"/api/v1/execution-logs/{execution.pk}/stream?token={token}")
    await socket.connect()
    message = await socket.receive_json_from()
    assert message["type"] == "connection_error" and message["data"]["error_code"] == "NOT_FOUND"


async def test_orchestration_stream_executes_and_streams(make_member, runs_worker):
    from apps.crews.services import orchestration_create

    member, agents, token = await setup(make_member)
    orchestration = await database_sync_to_async(orchestration_create)(
        organization=member.organization,
        actor=member.user,
        data={
            "name": "Pipeline",
            "pattern": "sequential",
            "agent_ids": [str(a.pk) for a in agents],
            "config_yaml": "steps: 2\n",
        },
    )
    socket = WebsocketCommunicator(application, f"/api/orchestrations/{orchestration.pk}/stream?token={token}")
    assert (await socket.connect())[0]
    ready = await socket.receive_json_from()
    assert ready["type"] == "ready" and ready["data"]["pattern"] == "sequential"
    await socket.send_json_to({"type": "execute", "input_data": {"topic": "streams"}})
    messages, code = await collect_until_closed(socket)
    assert code == 1000
    assert all({"type", "data", "timestamp"} <= set(m) for m in messages)
    assert any(m["type"] == "log" for m in messages)
    assert messages[-1]["type"] == "complete" and messages[-1]["data"]["status"] == "COMPLETED"
    assert any(m.get("agent_id") for m in messages), "events name the agent that produced them"
