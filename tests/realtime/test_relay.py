"""The process's event relay (kai_platform/realtime/relay.py): hub and console sockets have no
channel-layer channel of their own; the process joins each organization group once, with one
channel, and hands the group's events to its local sockets."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async

from kai_platform.realtime import relay
from kai_platform.realtime.groups import org_group
from tests.realtime.test_hub import emit, hello, receive, subscribe, token_for

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


async def test_sockets_of_an_organization_share_one_channel_and_one_group_membership(make_member):
    from channels.layers import get_channel_layer

    first = await database_sync_to_async(make_member)("admin")
    other = await database_sync_to_async(make_member)("admin")
    group = org_group(first.organization.pk)
    sockets = [(await hello(await token_for(first)))[0] for _ in range(3)]
    foreign, _ = await hello(await token_for(other))
    assert relay.local_members(group) == 3 and relay.local_members(org_group(other.organization.pk)) == 1
    channel = relay.channel()
    layer = get_channel_layer()
    async with layer.connection(layer.consistent_hash(group)) as connection:
        assert await connection.zrange(layer._group_key(group), 0, -1) == [channel.encode()]
    for socket in sockets + [foreign]:
        await subscribe(socket, events=["note.added"])
    seq = await emit(first.organization, "note.added", {"i": 1})
    for socket in sockets:
        message = await receive(socket)
        assert message["type"] == "note.added" and message["seq"] == seq
    assert await foreign.receive_nothing(0.5)  # another organization's event never reaches it
    for socket in sockets + [foreign]:
        await socket.disconnect()
    assert relay.local_members(group) == 0 and relay.channel() is None  # group left, channel stopped
    async with layer.connection(layer.consistent_hash(group)) as connection:
        assert await connection.zrange(layer._group_key(group), 0, -1) == []


async def test_relayed_events_wait_for_the_client_message_being_handled(amember, monkeypatch):
    """An event that arrives while the socket handles a client message is dispatched after it, as
    with a channel of the socket's own: the subscribe's replay comes first, then the live event."""
    from apps.events import consumers

    token = await token_for(amember)
    missed = [await emit(amember.organization, "note.added", {"i": i}) for i in range(3)]
    communicator, _ = await hello(token)
    original, table = consumers.HubConsumer._replay, consumers.HubConsumer.table_events_after
    live = {}

    async def slow_replay(self, *, after):
        live["seq"] = await emit(amember.organization, "note.added", {"i": 99})  # published mid-handler
        await asyncio.sleep(0.5)  # the relay has it by now
        await original(self, after=after)

    def table_without_live(self, after, limit):  # the replay reads only the missed ones
        return [event for event in table(self, after, limit) if event["seq"] <= missed[-1]]

    monkeypatch.setattr(consumers.HubConsumer, "_replay", slow_replay)
    monkeypatch.setattr(consumers.HubConsumer, "table_events_after", table_without_live)
    await communicator.send_json_to(
        {"type": "subscribe", "data": {"events": ["note.added"], "last_event_id": missed[0] - 1}}
    )
    assert (await receive(communicator))["type"] == "subscription_confirmed"
    seqs = [(await receive(communicator))["seq"] for _ in range(4)]
    assert seqs == missed + [live["seq"]]
    assert await communicator.receive_nothing(0.5)
    await communicator.disconnect()


@pytest.fixture
def amember(make_member):
    return make_member()
