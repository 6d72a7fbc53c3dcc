"""Seed 002 MCP messages: POST /api/v1/mcp and the /ws/mcp socket."""

from __future__ import annotations

import uuid

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from kai_platform.asgi import application
from tests.conftest import jwt_for
from tests.helpers import assert_envelope


def request(method, params=None, source_number=0, target=None):
    message = {
        "id": str(uuid.uuid4()),
        "version": "1.0",
        "type": "request",
        "method": method,
        "params": params or {},
        "timestamp": "2026-01-01T00:00:00Z",
        "source": {"agent_number": source_number, "agent_id": "client"},
    }
    if target:
        message["target"] = target
    return message


@pytest.mark.django_db
def test_register_store_query_and_state_over_http(member, client_for):
    client = client_for(member)
    sent = request(
        "agent.register",
        {"name": "Scout", "capabilities": ["search", "summarize"], "voice_commands": [], "config_schema": {}},
    )
    answer = client.post("/api/v1/mcp", sent, format="json").json()
    assert answer["id"] == sent["id"] and answer["type"] == "response" and answer["version"] == "1.0"
    number = answer["result"]["agent_number"]
    assert answer["result"]["created"] is True

    stored = client.post(
        "/api/v1/mcp",
        request(
            "memory.store",
            {
                "agent_number": number,
                "memory_type": "fact",
                "content": {"sky": "blue"},
                "tags": ["colour"],
                "ttl": 3600,
            },
        ),
        format="json",
    ).json()
    assert stored["type"] == "response" and stored["result"]["expires_at"]
    queried = client.post(
        "/api/v1/mcp", request("memory.query", {"agent_number": number, "tags": ["colour"]}), format="json"
    ).json()
    assert [m["content"] for m in queried["result"]["memories"]] == [{"sky": "blue"}]

    state = client.post(
        "/api/v1/mcp", request("system.get_state", {"include_agents": True, "include_performance": True}), format="json"
    ).json()["result"]
    assert state["agents"]["total"] == 1 and state["agents"]["items"][0]["name"] == "Scout"
    assert "runs_by_status" in state["performance"]

    again = client.post(
        "/api/v1/mcp",
        request("agent.register", {"agent_number": number, "name": "Scout II", "capabilities": ["search"]}),
        format="json",
    ).json()
    assert again["result"]["created"] is False and again["result"]["agent_number"] == number


@pytest.mark.django_db
@pytest.mark.parametrize(
    "message,code",
    [
        (request("no.such.method"), -32601),
        (request("memory.query", {"agent_number": 999}), -32004),
        (request("memory.query", {"agent_number": "one"}), -32602),
        (request("workflow.execute", {"workflow_id": "w"}), -32004),
        ({"version": "1.0", "type": "request", "method": "system.get_state"}, -32600),
    ],
)
def test_mcp_errors_are_mcp_error_messages(owner_client, message, code):
    answer = owner_client.post("/api/v1/mcp", message, format="json")
    assert answer.status_code == 200
    body = answer.json()
    assert body["type"] == "error" and body["error"]["code"] == code and body["error"]["message"]


@pytest.mark.django_db
def test_not_json_is_an_envelope_and_roles_hold(make_member, client_for):
    owner = make_member()
    assert_envelope(client_for(owner).generic("POST", "/api/v1/mcp", b"{nope", content_type="application/json"), 400)
    assert_envelope(client_for(owner).generic("POST", "/api/v1/mcp", b"", content_type="application/json"), 400)
    machine = make_member("agent", organization=owner.organization)
    answer = client_for(machine).post("/api/v1/mcp", request("agent.register", {"name": "X"}), format="json").json()
    assert answer["type"] == "error" and answer["error"]["code"] == -32003


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_send_message_reaches_the_target_agents_mcp_socket_and_hub_subscribers(make_member):
    from apps.agents.services import agent_create

    member = await database_sync_to_async(make_member)()
    sender, receiver = [
        await database_sync_to_async(agent_create)(
            organization=member.organization,
            actor=member.user,
            data={"name": name, "role": "r", "goal": "g", "backstory": "b"},
        )
        for name in ("Sender", "Receiver")
    ]
    token = await database_sync_to_async(lambda: jwt_for(member.user)["access_token"])()

    receiver_socket = WebsocketCommunicator(application, f"/ws/mcp?token={token}")
    assert (await receiver_socket.connect())[0]
    assert (await receiver_socket.receive_json_from())["method"] == "connection.ready"
    await receiver_socket.send_json_to(request("system.get_state", {}, source_number=receiver.agent_number))
    assert (await receiver_socket.receive_json_from())["type"] == "response"

    hub = WebsocketCommunicator(application, f"/api/v1/ws?token={token}")
    assert (await hub.connect())[0]
    await hub.receive_json_from()
    await hub.send_json_to({"type": "subscribe", "data": {"events": ["agent:message"]}})
    await hub.receive_json_from()

    sender_socket = WebsocketCommunicator(application, f"/ws/mcp?token={token}")
    assert (await sender_socket.connect())[0]
    await sender_socket.receive_json_from()
    sent = request(
        "agent.send_message",
        {
            "target_agent": receiver.agent_number,
            "message_type": "greeting",
            "data": {"text": "hello"},
            "requires_response": False,
        },
        source_number=sender.agent_number,
    )
    await sender_socket.send_json_to(sent)
    answer = await sender_socket.receive_json_from()
    assert answer["id"] == sent["id"] and answer["result"]["delivered"] is True

    notification = await receiver_socket.receive_json_from(timeout=5)
    assert notification["type"] == "notification" and notification["method"] == "agent.send_message"
    assert notification["params"]["data"] == {"text": "hello"}
    assert notification["params"]["from_agent"] == sender.agent_number
    hub_message = await hub.receive_json_from(timeout=5)
    assert hub_message["type"] == "agent:message" and hub_message["data"]["to_agent"] == receiver.agent_number
    for socket in (receiver_socket, sender_socket, hub):
        await socket.disconnect()
