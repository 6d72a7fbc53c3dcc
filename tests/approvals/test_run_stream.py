"""The run's stream tells its reader a person is being asked, and when they answered."""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from kai_platform.asgi import application
from tests.conftest import jwt_for

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

AGENTS = "writer:\n  role: Writer\n  goal: Write\n  backstory: Writes.\n"
TASKS = (
    "draft:\n  description: Draft it\n  expected_output: A line\n  agent: writer\n  human_input: true\n"
    "final:\n  description: Finish it\n  expected_output: A line\n  agent: writer\n"
)


@database_sync_to_async
def setup(make_member):
    from apps.runs import services as run_services
    from apps.runs.models import ExecutionKind

    member = make_member()
    execution = run_services.execution_create(
        organization=member.organization,
        actor=member.user,
        kind=ExecutionKind.CREW,
        enqueue=False,
        definition={"name": "c", "agents_yaml": AGENTS, "tasks_yaml": TASKS, "process": "sequential"},
    )
    return member, execution, jwt_for(member.user)["access_token"]


@database_sync_to_async
def run(execution):
    from apps.runs import lifecycle

    return lifecycle.run(execution.pk, worker="stream-test")


@database_sync_to_async
def approve(member, execution):
    from apps.approvals import services
    from apps.approvals.models import Approval

    approval = Approval.objects.get(execution=execution)
    services.approval_resolve(approval=approval, actor=member.user, role=member.role, approve=True, value="OK!")
    return approval


async def next_of(socket, wanted: str, timeout: float = 45):
    while True:
        output = await socket.receive_output(timeout)
        assert output["type"] != "websocket.close", f"closed before {wanted}"
        message = json.loads(output["text"])
        if message["type"] == wanted:
            return message


async def test_approval_requested_and_resolved_reach_the_run_stream(make_member):
    member, execution, token = await setup(make_member)
    socket = WebsocketCommunicator(application, f"/api/v1/execution-logs/{execution.pk}/stream?token={token}")
    assert (await socket.connect())[0]
    status = await next_of(socket, "status")  # sent once the socket follows the run's group
    assert status["data"]["status"] == "PENDING"
    assert await run(execution) == "waiting_for_approval"
    while status["data"]["status"] != "WAITING_FOR_APPROVAL":
        status = await next_of(socket, "status")
    requested = await next_of(socket, "approval_requested")
    assert requested["data"]["step_id"] == "draft" and requested["data"]["proposed"]["output"]
    approval = await approve(member, execution)
    resolved = await next_of(socket, "approval_resolved")
    assert resolved["data"]["approval_id"] == str(approval.pk) and resolved["data"]["edited_value"] == "OK!"
    assert await run(execution) == "completed"
    complete = await next_of(socket, "complete")
    assert complete["data"]["status"] == "COMPLETED" and "Context from draft: OK!" in complete["data"]["result"]
    await socket.disconnect()
