"""The agent socket /ws/agents/{agent_id} (seed 000): status, heartbeat, upload, commands
streamed back from a real worker, and stream-prompt chunks shared with SSE."""

from __future__ import annotations

import asyncio
import base64

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from kai_platform.asgi import application
from tests.conftest import jwt_for

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


@database_sync_to_async
def setup_agent(make_member, role="owner", **data):
    from apps.agents.services import agent_create

    member = make_member(role)
    values = {"name": "Socket agent", "role": "Helper", "goal": "Help", "backstory": "Helpful."}
    values.update(data)
    agent = agent_create(organization=member.organization, actor=member.user, data=values)
    return member, agent, jwt_for(member.user)["access_token"]


async def open_socket(agent_id, token):
    communicator = WebsocketCommunicator(application, f"/ws/agents/{agent_id}?token={token}")
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def next_of(communicator, type_, timeout=10):
    while True:
        message = await communicator.receive_json_from(timeout=timeout)
        if message["type"] == type_:
            return message


async def test_status_update_on_connect_and_on_change(make_member):
    member, agent, token = await setup_agent(make_member)
    socket = await open_socket(agent.pk, token)
    first = await socket.receive_json_from()
    assert first["type"] == "status_update" and first["status"] == agent.status and "timestamp" in first

    from apps.agents.services import agent_update

    await database_sync_to_async(agent_update)(agent=agent, actor=member.user, data={"status": "offline"})
    changed = await next_of(socket, "status_update")
    assert changed["status"] == "offline"
    await socket.disconnect()


async def test_another_organizations_agent_is_refused(make_member):
    _, agent, _ = await setup_agent(make_member)
    stranger = await database_sync_to_async(make_member)()
    token = await database_sync_to_async(lambda: jwt_for(stranger.user)["access_token"])()
    for agent_id in (agent.pk, "not-a-uuid"):
        socket = WebsocketCommunicator(application, f"/ws/agents/{agent_id}?token={token}")
        await socket.connect()
        message = await socket.receive_json_from()
        assert message["type"] == "connection_error" and message["data"]["error_code"] == "AGENT_NOT_FOUND"
        closed = await socket.receive_output(3)
        assert closed["type"] == "websocket.close" and closed["code"] == 1008


async def test_heartbeat_feeds_liveness(make_member):
    from apps.agents.models import Agent

    _, agent, token = await setup_agent(make_member)
    socket = await open_socket(agent.pk, token)
    await socket.receive_json_from()
    await socket.send_json_to({"type": "heartbeat", "agent_id": str(agent.pk)})
    assert (await next_of(socket, "heartbeat_ack"))["agent_id"] == str(agent.pk)
    refreshed = await database_sync_to_async(Agent.objects.get)(pk=agent.pk)
    assert refreshed.last_heartbeat is not None
    await socket.disconnect()


async def test_upload_is_stored_through_the_files_app(make_member, tmp_path, settings):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}},
    }
    from apps.files.models import StoredFile

    _, agent, token = await setup_agent(make_member)
    socket = await open_socket(agent.pk, token)
    await socket.receive_json_from()
    await socket.send_json_to(
        {"type": "upload", "filename": "../report.pdf", "base64": base64.b64encode(b"%PDF-1.4\nhello").decode()}
    )
    result = await next_of(socket, "upload_result")
    assert result["filename"] == "report.pdf" and result["content_type"] == "application/pdf"
    stored = await database_sync_to_async(StoredFile.objects.get)(pk=result["file_id"])
    assert stored.agent_id == agent.pk and stored.size == len(b"%PDF-1.4\nhello")
    await socket.send_json_to({"type": "upload", "filename": "x", "base64": "***"})
    assert (await next_of(socket, "connection_error"))["data"]["error_code"] == "INVALID_MESSAGE_FORMAT"
    await socket.disconnect()


async def test_command_output_streams_back_from_a_real_worker(make_member):
    from django.conf import settings

    from tests.helpers import WorkerProcess

    _, agent, token = await setup_agent(make_member)
    worker = WorkerProcess("-Q", f"{settings.CELERY_TASK_DEFAULT_QUEUE},{settings.KAI_REDIS_PREFIX}.runs")
    try:
        await asyncio.to_thread(worker.wait_alive)
        socket = await open_socket(agent.pk, token)
        await socket.receive_json_from()
        await socket.send_json_to({"type": "command", "command": "summarize", "params": {"topic": "sockets"}})
        chunks, result = [], None
        while result is None:
            message = await socket.receive_json_from(timeout=60)
            if message["type"] == "stream_chunk" and not message["done"]:
                chunks.append(message["chunk"])
            elif message["type"] == "command_result":
                result = message
        assert chunks, "the command's tokens were streamed"
        assert result["command"] == "summarize" and result["status"] == "COMPLETED"
        assert result["stream_id"] and result["result"]
        await socket.disconnect()
    finally:
        await asyncio.to_thread(worker.stop)


async def test_stream_prompt_chunks_reach_sse_and_the_agent_socket(make_member):
    """One stream, two readers: the SSE response of POST stream-prompt and the agent's socket."""
    import json

    from django.conf import settings
    from rest_framework.test import APIClient

    from tests.helpers import WorkerProcess

    member, agent, token = await setup_agent(make_member)
    worker = WorkerProcess("-Q", f"{settings.CELERY_TASK_DEFAULT_QUEUE},{settings.KAI_REDIS_PREFIX}.runs")
    try:
        await asyncio.to_thread(worker.wait_alive)
        socket = await open_socket(agent.pk, token)
        await socket.receive_json_from()

        def sse():
            from django.db import connections

            try:
                client = APIClient()
                client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
                response = client.post(
                    f"/api/v1/agents/{agent.pk}/stream-prompt", {"prompt": "Tell me about streams"}, format="json"
                )
                body = b"".join(response.streaming_content).decode()
                events = [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]
                return response["X-Stream-ID"], events
            finally:
                connections.close_all()

        stream_id, events = await asyncio.to_thread(sse)
        sse_chunks = [e["chunk"] for e in events if e.get("type") == "stream_chunk" and not e.get("done")]
        socket_chunks = []
        while True:
            message = await socket.receive_json_from(timeout=30)
            if message["type"] == "stream_chunk" and message["stream_id"] == stream_id:
                if message["done"]:
                    break
                socket_chunks.append(message["chunk"])
        assert sse_chunks and socket_chunks == sse_chunks
        await socket.disconnect()
    finally:
        await asyncio.to_thread(worker.stop)
