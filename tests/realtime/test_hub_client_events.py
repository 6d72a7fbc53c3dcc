"""Seed 002 WebSocketClientEvents on the hub socket: the REST routes' checks and services."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from tests.factories import make_tenant_object
from tests.realtime.test_hub import hello, receive, token_for

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


async def ask(socket, type_, data):
    """Send a client event; the answer is the message of the same type or a connection_error."""
    await socket.send_json_to({"type": type_, "data": data})
    while True:
        message = await receive(socket, timeout=10)
        if message["type"] in {type_, "connection_error"}:
            return message


def _workflow(member):
    from apps.workflows.models import Workflow

    return make_tenant_object(Workflow, member.organization, member.user)


def _agent(member):
    from apps.agents.services import agent_create

    return agent_create(
        organization=member.organization,
        actor=member.user,
        data={"name": "Socketed", "role": "Helper", "goal": "Help", "backstory": "Kind."},
    )


async def test_workflow_execute_then_stop(make_member):
    from apps.runs.models import Execution
    from apps.workflows.models import WorkflowRun

    owner = await database_sync_to_async(make_member)()
    workflow = await database_sync_to_async(_workflow)(owner)
    socket, _ = await hello(await token_for(owner))

    started = await ask(
        socket, "workflow:execute", {"workflow_id": str(workflow.pk), "data": {"topic": "x"}, "request_id": "r1"}
    )
    assert started["type"] == "workflow:execute", started
    body = started["data"]
    assert body["success"] is True and body["request_id"] == "r1" and body["workflow_id"] == str(workflow.pk)
    run = await database_sync_to_async(WorkflowRun.objects.select_related("execution").get)(pk=body["run_id"])
    assert run.organization_id == owner.organization.pk and str(run.execution_id) == body["execution_id"]
    assert run.inputs == {"topic": "x"} and run.trigger_source == f"ws:{owner.user.pk}"

    stopped = await ask(socket, "workflow:stop", {"execution_id": body["execution_id"]})
    assert stopped["type"] == "workflow:stop", stopped
    assert stopped["data"]["success"] is True and stopped["data"]["run_id"] == body["run_id"]
    execution = await database_sync_to_async(Execution.objects.get)(pk=body["execution_id"])
    assert execution.cancel_requested and execution.status == "CANCELLED"

    again = await ask(socket, "workflow:stop", {"execution_id": body["execution_id"]})
    assert again["type"] == "connection_error" and again["data"]["status"] == 409
    assert again["data"]["event"] == "workflow:stop"
    missing = await ask(socket, "workflow:stop", {})
    assert missing["data"]["status"] == 400 and missing["data"]["errors"][0]["field"] == "execution_id"
    await socket.disconnect()


async def test_another_organizations_ids_are_not_found_like_rest(make_member, client_for):
    mine = await database_sync_to_async(make_member)()
    theirs = await database_sync_to_async(make_member)()
    workflow = await database_sync_to_async(_workflow)(theirs)
    agent = await database_sync_to_async(_agent)(theirs)
    socket, _ = await hello(await token_for(mine))

    denied = await ask(socket, "workflow:execute", {"workflow_id": str(workflow.pk)})
    assert denied["type"] == "connection_error", denied
    rest = await database_sync_to_async(
        lambda: client_for(mine).post(f"/api/v1/workflows/{workflow.pk}/execute", {}, format="json")
    )()
    assert rest.status_code == 404
    assert denied["data"]["status"] == 404 and denied["data"]["error_code"] == rest.json()["code"]
    assert denied["data"]["error_message"] == rest.json()["detail"]

    for type_, data in (
        ("agent:execute", {"agent_id": str(agent.pk), "command": {"action": "answer"}}),
        ("agent:execute", {"agent_id": "not-a-uuid", "command": {"action": "answer"}}),
        ("workflow:stop", {"execution_id": "00000000-0000-0000-0000-000000000000"}),
    ):
        answer = await ask(socket, type_, data)
        assert answer["type"] == "connection_error" and answer["data"]["status"] == 404, answer
    from apps.workflows.models import WorkflowRun

    assert not await database_sync_to_async(WorkflowRun.objects.filter(workflow=workflow).exists)()
    await socket.disconnect()


async def test_agent_execute_creates_an_execution_and_validates(make_member):
    from apps.runs.models import Execution

    owner = await database_sync_to_async(make_member)()
    agent = await database_sync_to_async(_agent)(owner)
    socket, _ = await hello(await token_for(owner))

    answer = await ask(
        socket,
        "agent:execute",
        {
            "agent_id": str(agent.pk),
            "command": {"action": "summarize", "parameters": {"text": "hi"}, "priority": "high"},
        },
    )
    assert answer["type"] == "agent:execute", answer
    execution = await database_sync_to_async(Execution.objects.get)(pk=answer["data"]["execution_id"])
    assert execution.organization_id == owner.organization.pk and execution.agent_id == agent.pk
    assert execution.kind == "agent_execute" and execution.definition["action"] == "summarize"
    assert answer["data"]["status"] == execution.status

    invalid = await ask(socket, "agent:execute", {"agent_id": str(agent.pk), "command": {"priority": "urgent"}})
    assert invalid["type"] == "connection_error" and invalid["data"]["status"] == 400
    assert {e["field"] for e in invalid["data"]["errors"]} >= {"command.action", "command.priority"}
    await socket.disconnect()


async def test_system_modify_roles_and_step_up_like_rest(make_member):
    from apps.accounts.services import organization_settings_update
    from apps.system.models import SystemModification

    owner = await database_sync_to_async(make_member)()
    user = await database_sync_to_async(make_member)("user", organization=owner.organization)
    owner_socket, _ = await hello(await token_for(owner))
    user_socket, _ = await hello(await token_for(user))

    refused = await ask(user_socket, "system:modify", {"type": "system_setting", "changes": {"theme": "dark"}})
    assert refused["type"] == "connection_error" and refused["data"]["status"] == 403, refused
    assert "Role 'user'" in refused["data"]["error_message"]

    applied = await ask(
        owner_socket,
        "system:modify",
        {"type": "system_setting", "changes": {"theme": "dark"}, "description": "from the socket"},
    )
    assert applied["type"] == "system:modify", applied
    modification = applied["data"]["modification"]
    row = await database_sync_to_async(SystemModification.objects.get)(pk=modification["id"])
    assert row.organization_id == owner.organization.pk and row.after_state == {"theme": "dark"}
    # seed 002's SystemModification shape: after_state carries the changes
    seeded = await ask(owner_socket, "system:modify", {"type": "system_setting", "after_state": {"theme": "light"}})
    assert seeded["type"] == "system:modify" and seeded["data"]["modification"]["after_state"] == {"theme": "light"}
    assert await database_sync_to_async(SystemModification.objects.filter(organization=owner.organization).count)() == 2

    await database_sync_to_async(organization_settings_update)(
        organization=owner.organization, actor=owner.user, changes={"require_step_up": True}
    )
    gated = await ask(owner_socket, "system:modify", {"type": "system_setting", "changes": {"theme": "blue"}})
    assert gated["type"] == "connection_error" and gated["data"]["error_code"] == "AUTH_002", gated
    assert gated["data"]["status"] == 403 and gated["data"]["step_up"]["methods"]
    assert await database_sync_to_async(SystemModification.objects.filter(organization=owner.organization).count)() == 2
    await owner_socket.disconnect()
    await user_socket.disconnect()


async def test_subscribe_architecture_sends_it_then_its_changes(make_member):
    owner = await database_sync_to_async(make_member)()
    agent = await database_sync_to_async(_agent)(owner)
    socket, _ = await hello(await token_for(owner))

    await socket.send_json_to({"type": "system:subscribe_architecture"})
    confirmed = await receive(socket)
    assert (
        confirmed["type"] == "subscription_confirmed" and "system:architecture_updated" in confirmed["data"]["events"]
    )
    current = await receive(socket)
    assert current["type"] == "system:architecture", current
    assert str(agent.pk) in str(current["data"]["architecture"]["agents"])

    await ask(socket, "system:modify", {"type": "architecture_change", "changes": {"layout": "grid"}})
    while True:
        update = await receive(socket, timeout=10)
        if update["type"] == "system:architecture_updated":
            break
    assert update["data"]["changes"][0]["type"] == "architecture_change"
    await socket.disconnect()


async def test_voice_command_and_stop_listening(make_member):
    from apps.voice.models import VoiceCommand

    owner = await database_sync_to_async(make_member)()
    await database_sync_to_async(_agent)(owner)
    socket, _ = await hello(await token_for(owner))

    answer = await ask(socket, "voice:command", {"text_fallback": "show me the status of all agents", "language": "en"})
    assert answer["type"] == "voice:command", answer
    data = answer["data"]
    assert data["success"] is True and data["transcribed_text"] == "show me the status of all agents"
    assert data["input_type"] == "text" and data["intent"]
    command = await database_sync_to_async(VoiceCommand.objects.get)(pk=data["command_id"])
    assert command.organization_id == owner.organization.pk

    # audio with no speech-to-text provider and no text fallback: REST's 503 VOICE_003
    import base64

    audio = base64.b64encode(b"RIFF" + b"\0" * 64).decode()
    unavailable = await ask(socket, "voice:command", {"audio_data": audio, "audio_format": "wav"})
    assert unavailable["type"] == "connection_error", unavailable
    assert unavailable["data"]["status"] == 503 and unavailable["data"]["error_code"] == "VOICE_003"
    empty = await ask(socket, "voice:command", {})
    assert empty["data"]["status"] == 400

    stop = await ask(socket, "voice:stop_listening", {})
    assert stop["type"] == "voice:stop_listening" and stop["data"]["listening"] is False
    await socket.disconnect()
