"""The knowledge graph: CRUD, the neighbourhood (depth ≤ 3, either direction), isolation, and
seed 004's six events on a real hub socket (a daphne process, the `websockets` client) from
REST writes."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from channels.db import database_sync_to_async

from tests.conftest import jwt_for
from tests.helpers import assert_envelope

G = "/api/v1/knowledge-graph"
SEED_EVENTS = [
    "entity_created",
    "entity_updated",
    "entity_deleted",
    "relationship_created",
    "relationship_updated",
    "relationship_deleted",
]


def _entity(client, label, type_="concept", **props):
    response = client.post(f"{G}/entities", {"type": type_, "label": label, "properties": props}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def _link(client, a, b, type_="related_to", **props):
    response = client.post(
        f"{G}/relationships",
        {"source_id": a["id"], "target_id": b["id"], "type": type_, "properties": props},
        format="json",
    )
    assert response.status_code == 201, response.content
    return response.json()


@pytest.mark.django_db
def test_neighbourhood_walks_both_directions_up_to_the_depth(owner_client):
    a, b, c, d, e = (_entity(owner_client, name) for name in "ABCDE")
    _link(owner_client, a, b)
    _link(owner_client, c, b)  # incoming to b: walked too
    _link(owner_client, c, d)
    _link(owner_client, d, e)
    _link(owner_client, e, a)  # a cycle back to the start

    def around(depth):
        body = owner_client.get(f"{G}/neighbourhood", {"entity_id": a["id"], "depth": depth}).json()
        return {x["label"]: x["depth"] for x in body["entities"]}, body["relationships"]

    one, rels = around(1)
    assert one == {"A": 0, "B": 1, "E": 1} and len(rels) == 2
    assert around(2)[0] == {"A": 0, "B": 1, "E": 1, "C": 2, "D": 2}
    assert len(around(3)[1]) == 5
    assert_envelope(owner_client.get(f"{G}/neighbourhood", {"entity_id": a["id"], "depth": 4}), 400)
    assert_envelope(owner_client.get(f"{G}/neighbourhood", {"entity_id": "nope"}), 404)
    # the document says depth is an integer from 1 to 3: given empty, it is not one
    assert_envelope(owner_client.get(f"{G}/neighbourhood", {"entity_id": a["id"], "depth": ""}), 400)


@pytest.mark.django_db
def test_relationships_stay_inside_the_organization(make_member, client_for):
    mine, theirs = client_for(make_member()), client_for(make_member())
    a, b = _entity(mine, "A"), _entity(theirs, "B")
    refused = mine.post(f"{G}/relationships", {"source_id": a["id"], "target_id": b["id"], "type": "x"}, format="json")
    assert_envelope(refused, 400)
    assert "target_id" in refused.json()["detail"]
    assert_envelope(theirs.get(f"{G}/neighbourhood", {"entity_id": a["id"]}), 404)
    assert_envelope(theirs.get(f"{G}/entities/{a['id']}"), 404)


@pytest.fixture
def server(shared_live_server):
    return shared_live_server


async def _next(socket, wanted: set, timeout=15.0):
    while True:
        message = json.loads(await asyncio.wait_for(socket.recv(), timeout))
        if message["type"] in wanted:
            return message


@pytest.mark.slow
@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_every_graph_write_reaches_a_hub_socket_as_seed_004_events(server, make_member):
    member = await database_sync_to_async(make_member)("developer")
    token = (await database_sync_to_async(jwt_for)(member.user))["access_token"]

    def call(method, path, body=None):
        import urllib.request

        request = urllib.request.Request(
            f"{server.url}/api/v1/knowledge-graph/{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return json.loads(raw) if raw else None

    async with websockets.connect(f"{server.ws_url}/api/v1/ws?token={token}") as socket:
        await _next(socket, {"connection_established"})
        await socket.send(json.dumps({"type": "subscribe", "data": {"events": SEED_EVENTS}}))
        await _next(socket, {"subscription_confirmed"})
        wanted = set(SEED_EVENTS)
        a = await asyncio.to_thread(
            call,
            "POST",
            "entities",
            {"type": "concept", "label": "Quantum Computing", "properties": {"category": "technology"}},
        )
        created = await _next(socket, wanted)
        assert created["type"] == "entity_created"
        assert created["data"]["entity_id"] == a["id"] and created["data"]["label"] == "Quantum Computing"
        assert created["data"]["type"] == "concept" and created["data"]["properties"] == {"category": "technology"}
        assert created["data"]["created_by"] == str(member.user.pk)
        b = await asyncio.to_thread(call, "POST", "entities", {"type": "concept", "label": "Qubits"})
        await _next(socket, wanted)
        await asyncio.to_thread(call, "PATCH", f"entities/{a['id']}", {"label": "QC"})
        updated = await _next(socket, wanted)
        assert updated["type"] == "entity_updated" and updated["data"]["label"] == "QC"
        rel = await asyncio.to_thread(
            call,
            "POST",
            "relationships",
            {"source_id": a["id"], "target_id": b["id"], "type": "related_to", "properties": {"strength": 0.85}},
        )
        linked = await _next(socket, wanted)
        assert linked["type"] == "relationship_created"
        assert {
            k: linked["data"][k] for k in ("relationship_id", "source_id", "target_id", "relationship_type", "strength")
        } == {
            "relationship_id": rel["id"],
            "source_id": a["id"],
            "target_id": b["id"],
            "relationship_type": "related_to",
            "strength": 0.85,
        }
        await asyncio.to_thread(call, "PATCH", f"relationships/{rel['id']}", {"type": "part_of"})
        relinked = await _next(socket, wanted)
        assert relinked["type"] == "relationship_updated" and relinked["data"]["relationship_type"] == "part_of"
        await asyncio.to_thread(call, "DELETE", f"relationships/{rel['id']}")
        unlinked = await _next(socket, wanted)
        assert unlinked["type"] == "relationship_deleted" and unlinked["data"]["relationship_id"] == rel["id"]
        await asyncio.to_thread(call, "DELETE", f"entities/{b['id']}")
        deleted = await _next(socket, wanted)
        assert deleted["type"] == "entity_deleted" and deleted["data"]["entity_id"] == b["id"]
