"""Realtime: the channel layer drops messages when a socket's channel is over capacity (channels-redis
discards, it does not queue). A burst far beyond capacity still reaches a subscribed socket complete:
the socket reads what the layer dropped from the event table. 0 lost, 0 duplicated (an event the layer
dropped may arrive after a later one that it delivered live; each carries its ``seq``)."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from channels.db import database_sync_to_async
from django.db import transaction

from apps.events.services import publish
from tests.conftest import jwt_for
from tests.helpers import LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

BURST = 300
CAPACITY = 2


@pytest.fixture
def tiny_layer(settings):
    """This process publishes through a channel layer whose per-channel capacity is 2: every message
    beyond the second one a socket has not yet read is dropped by channels-redis."""
    from channels.layers import channel_layers
    from channels_redis.core import RedisChannelLayer

    config = settings.CHANNEL_LAYERS["default"]["CONFIG"]
    original = channel_layers.backends.get("default")
    layer = RedisChannelLayer(
        hosts=config["hosts"], prefix=config["prefix"], capacity=CAPACITY, expiry=config.get("expiry", 60)
    )
    channel_layers.backends["default"] = layer
    yield layer
    if original is not None:
        channel_layers.backends["default"] = original
    else:
        channel_layers.backends.pop("default", None)


@database_sync_to_async
def burst(organization) -> list[int]:
    seqs = []
    for i in range(BURST):
        with transaction.atomic():
            seqs.append(publish(organization, "note.added", {"i": i}).pk)
    return seqs


async def recv(socket, timeout=20.0):
    while True:
        message = json.loads(await asyncio.wait_for(socket.recv(), timeout))
        if message["type"] == "note.added":
            return message["seq"]


async def test_capacity_overflow_is_caught_up_from_the_event_table(make_member, tiny_layer):
    server = LiveServer(KAI_WS_RECONCILE_SECONDS="0.5")
    try:
        member = await database_sync_to_async(make_member)()
        token = (await database_sync_to_async(jwt_for)(member.user))["access_token"]
        async with websockets.connect(f"{server.ws_url}/api/v1/ws?token={token}", max_size=2**22) as socket:
            while json.loads(await socket.recv())["type"] != "connection_established":
                pass
            await socket.send(json.dumps({"type": "subscribe", "data": {"events": ["note.added"]}}))
            while json.loads(await socket.recv())["type"] != "subscription_confirmed":
                pass
            published = await burst(member.organization)
            received = [await recv(socket) for _ in published]
            with pytest.raises(asyncio.TimeoutError):
                await recv(socket, timeout=1.5)
        late = sum(1 for before, after in zip(received, received[1:]) if after < before)
        print(
            f"realtime overflow: burst {BURST} at capacity {CAPACITY}, received {len(received)}, "
            f"lost {len(set(published) - set(received))}, duplicated {len(received) - len(set(received))}, "
            f"caught up late (after a later live one) {late}"
        )
        assert len(received) == len(set(received)) == len(published)  # 0 duplicated
        assert sorted(received) == published  # 0 lost
    finally:
        server.stop()
