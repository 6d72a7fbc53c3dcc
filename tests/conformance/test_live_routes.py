"""Item 6 behaviours on the wire, through a real daphne process: a multipart upload to
``agents/{id}/upload`` (httpx) and a restart seen on the agent socket (``websockets``)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets
from channels.db import database_sync_to_async

from apps.agents.services import agent_create
from apps.files.models import StoredFile
from tests.conftest import jwt_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def server(shared_live_server):
    return shared_live_server


def _setup(make_member):
    member = make_member()
    agent = agent_create(organization=member.organization, actor=member.user, data={"name": "Scout"})
    return member, agent, jwt_for(member.user)["access_token"]


def test_agent_upload_is_a_file_of_the_agent(server, make_member):
    member, agent, token = _setup(make_member)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=15) as client:
        response = client.post(
            f"/api/agents/{agent.pk}/upload",
            files=[
                ("file", ("notes.txt", b"plain words\n", "text/plain")),
                ("file", ("b.csv", b"a,b\n1,2\n", "text/csv")),
            ],
            data={"metadata": json.dumps({"kind": "context"})},
        )
        assert response.status_code == 201, response.text
        files = response.json()["files"]
        assert [f["agent_id"] for f in files] == [str(agent.pk)] * 2
        assert files[0]["metadata"] == {"kind": "context"}
        listed = client.get("/api/v1/files", params={"agent_id": str(agent.pk)}).json()
        assert sorted(f["name"] for f in listed["items"]) == ["b.csv", "notes.txt"]
        assert (
            client.get("/api/v1/files", params={"agent_id": "00000000-0000-4000-8000-000000000000"}).json()["total"]
            == 0
        )
        download = client.get(files[0]["download_url"])
        assert download.content == b"plain words\n"
        # a JSON body is not an upload; no file is a validation error; an agent_id field is refused
        assert client.post(f"/api/v1/agents/{agent.pk}/upload", json={"file": "x"}).status_code == 415
        assert (
            client.post(
                f"/api/v1/agents/{agent.pk}/upload", data={"metadata": "{}"}, files=[("other", ("x", b"x"))]
            ).json()["code"]
            == "GENERAL_001"
        )
    assert StoredFile.objects.filter(agent_id=agent.pk).count() == 2


@pytest.mark.asyncio
async def test_restart_shows_on_the_agent_socket_even_when_unchanged(server, make_member):
    member, agent, token = await database_sync_to_async(_setup)(make_member)
    async with websockets.connect(f"{server.ws_url}/ws/agents/{agent.pk}?token={token}") as socket:
        first = json.loads(await asyncio.wait_for(socket.recv(), 10))
        assert first["type"] == "status_update" and first["status"] == "idle"
        async with httpx.AsyncClient(base_url=server.url, timeout=15) as client:
            response = await client.post(
                f"/api/v1/agents/{agent.pk}/restart", headers={"Authorization": f"Bearer {token}"}
            )
        assert response.status_code == 200, response.text
        while True:
            message = json.loads(await asyncio.wait_for(socket.recv(), 10))
            if message["type"] == "status_update":
                break
        assert message["status"] == "idle" and message["restarted"] is True and isinstance(message["seq"], int)
