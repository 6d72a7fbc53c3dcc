"""The hub socket /api/v1/ws (seed 004) through Channels' WebsocketCommunicator."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import transaction

from apps.events.services import publish
from kai_platform.asgi import application
from tests.conftest import jwt_for

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


async def connect(token=None, path="/api/v1/ws", query="", origin=None, expect=True):
    qs = "&".join(part for part in (f"token={token}" if token else "", query) if part)
    headers = [(b"origin", origin.encode())] if origin else []
    communicator = WebsocketCommunicator(application, f"{path}?{qs}" if qs else path, headers=headers)
    connected, _ = await communicator.connect()
    if expect:
        assert connected
    return communicator, connected


async def receive(communicator, timeout=3):
    return await communicator.receive_json_from(timeout=timeout)


async def hello(token, **kwargs):
    communicator, _ = await connect(token, **kwargs)
    message = await receive(communicator)
    assert message["type"] == "connection_established", message
    return communicator, message


async def subscribe(communicator, **data):
    await communicator.send_json_to({"type": "subscribe", "data": data})
    message = await receive(communicator)
    assert message["type"] == "subscription_confirmed", message
    return message


async def expect_closed(communicator, code, timeout=3):
    while True:
        output = await communicator.receive_output(timeout)
        if output["type"] == "websocket.close":
            assert output.get("code") == code, output
            return
        if output["type"] == "websocket.send":
            continue


@database_sync_to_async
def emit(organization, type_, data=None, **kwargs):
    with transaction.atomic():
        return publish(organization, type_, data or {}, **kwargs).pk


@database_sync_to_async
def token_for(member):
    return jwt_for(member.user)["access_token"]


@pytest.fixture
def amember(make_member):
    return make_member()


async def test_token_in_query_connects_with_seed_004_hello(amember):
    communicator, message = await hello(await token_for(amember))
    data = message["data"]
    assert data["client_id"].startswith("client_") and data["pooled"] is True
    assert data["session_id"] and data["server_version"]
    assert "timestamp" in message
    await communicator.disconnect()


async def test_first_message_auth_and_the_api_alias(amember):
    communicator, _ = await connect(path="/api/ws")
    await communicator.send_json_to({"type": "auth", "token": await token_for(amember)})
    assert (await receive(communicator))["type"] == "connection_established"
    await communicator.disconnect()


async def test_api_key_authenticates(amember):
    from apps.accounts.services import api_key_create

    _, raw = await database_sync_to_async(api_key_create)(
        organization=amember.organization, created_by=amember.user, creator_role="owner", name="ws"
    )
    communicator, _ = await hello(raw)
    await communicator.disconnect()


@pytest.mark.parametrize("token", ["garbage", "kai_nope_nope"])
async def test_bad_token_is_connection_error_then_1008(token):
    communicator, _ = await connect(token)
    message = await receive(communicator)
    assert message["type"] == "connection_error"
    assert message["data"]["error_code"] == "AUTHENTICATION_FAILED" and message["data"]["close_code"] == 1008
    await expect_closed(communicator, 1008)


async def test_no_credential_within_the_window_closes(settings):
    settings.KAI_WS_AUTH_TIMEOUT = 0.2
    communicator, _ = await connect()
    await expect_closed(communicator, 1008)


async def test_a_message_before_auth_closes(amember):
    communicator, _ = await connect()
    await communicator.send_json_to({"type": "ping"})
    await expect_closed(communicator, 1008)


async def test_origin_is_checked(amember):
    token = await token_for(amember)
    refused, _ = await connect(token, origin="https://evil.example")
    message = await receive(refused)  # accepted, then closed with 1008 and a reason (not a bare 403)
    assert message["data"]["error_code"] == "PERMISSION_DENIED", message
    await expect_closed(refused, 1008)
    allowed, _ = await hello(token, origin="http://localhost:3000")
    await allowed.disconnect()


async def test_subscribe_and_receive_with_seq_and_seed_names(amember):
    communicator, _ = await hello(await token_for(amember))
    confirmed = await subscribe(communicator, events=["agent_status", "agent:status_changed"])
    assert confirmed["data"]["events"] == ["agent:status_changed", "agent_status"]
    seq = await emit(
        amember.organization,
        "agent.status_changed",
        {"old_status": "idle", "new_status": "active"},
        agent="11111111-1111-1111-1111-111111111111",
    )
    got = [await receive(communicator), await receive(communicator)]
    assert {m["type"] for m in got} == {"agent_status", "agent:status_changed"}
    by_name = {m["type"]: m for m in got}
    for message in got:
        assert message["seq"] == seq and message["data"]["agent_id"] == "11111111-1111-1111-1111-111111111111"
    # seed 004 carries status strings; seed 002's agent:status_changed carries AgentStatus objects
    assert by_name["agent_status"]["data"]["new_status"] == "active"
    status_object = by_name["agent:status_changed"]["data"]["new_status"]
    assert set(status_object) >= {"state", "health_score", "resource_usage"} and status_object["state"] == "idle"
    await communicator.disconnect()


async def test_unsupported_event_type_is_subscription_error(amember):
    communicator, _ = await hello(await token_for(amember))
    await communicator.send_json_to({"type": "subscribe", "data": {"events": ["invalid_event"]}})
    message = await receive(communicator)
    assert message["type"] == "subscription_error"
    assert message["data"]["error_code"] == "UNSUPPORTED_EVENT_TYPE"
    assert "agent_status" in message["data"]["supported_events"]
    await communicator.disconnect()


async def test_at_most_20_event_types(amember):
    communicator, _ = await hello(await token_for(amember))
    names = [f"custom.event_{i}" for i in range(21)]
    await communicator.send_json_to({"type": "subscribe", "data": {"events": names}})
    message = await receive(communicator)
    assert message["type"] == "subscription_error" and message["data"]["error_code"] == "SUBSCRIPTION_LIMIT_EXCEEDED"
    await subscribe(communicator, events=names[:20])
    await communicator.disconnect()


async def test_unsubscribe_stops_delivery(amember):
    communicator, _ = await hello(await token_for(amember))
    await subscribe(communicator, events=["agent_created", "agent_deleted"])
    await communicator.send_json_to({"type": "unsubscribe", "data": {"events": ["agent_created"]}})
    assert (await receive(communicator))["data"]["events"] == ["agent_deleted"]
    await emit(amember.organization, "agent.created", {"name": "x"})
    seq = await emit(amember.organization, "agent.deleted", {"name": "x"})
    message = await receive(communicator)
    assert message["type"] == "agent_deleted" and message["seq"] == seq
    assert await communicator.receive_nothing(0.3)
    await communicator.disconnect()


async def test_agent_and_severity_filters(amember):
    communicator, _ = await hello(await token_for(amember))
    wanted = "22222222-2222-2222-2222-222222222222"
    await subscribe(communicator, events=["system.custom"], agents=[wanted], filters={"severity": ["error"]})
    await emit(
        amember.organization, "system.custom", {"n": 1}, agent="33333333-3333-3333-3333-333333333333", severity="error"
    )
    await emit(amember.organization, "system.custom", {"n": 2}, agent=wanted, severity="info")
    seq = await emit(amember.organization, "system.custom", {"n": 3}, agent=wanted, severity="error")
    message = await receive(communicator)
    assert message["seq"] == seq and message["data"]["n"] == 3
    assert await communicator.receive_nothing(0.3)
    await communicator.disconnect()


async def test_only_own_organization_and_user_role_visibility(make_member):
    owner = await database_sync_to_async(make_member)()
    user = await database_sync_to_async(make_member)("user", organization=owner.organization)
    stranger = await database_sync_to_async(make_member)()
    user_socket, _ = await hello(await token_for(user))
    stranger_socket, _ = await hello(await token_for(stranger))
    for socket in (user_socket, stranger_socket):
        await subscribe(socket, events=["note.added"])
    await emit(owner.organization, "note.added", {"who": "owner"}, actor=owner.user)
    mine = await emit(owner.organization, "note.added", {"who": "user"}, actor=user.user)
    message = await receive(user_socket)
    assert message["seq"] == mine
    assert await user_socket.receive_nothing(0.3)
    assert await stranger_socket.receive_nothing(0.3)
    await user_socket.disconnect()
    await stranger_socket.disconnect()


async def test_ping_pong_and_configure(amember):
    communicator, _ = await hello(await token_for(amember))
    await communicator.send_json_to({"type": "ping"})
    pong = await receive(communicator)
    assert pong["type"] == "pong" and pong["data"]["server_time"] and pong["data"]["connection_duration"] >= 0
    await communicator.send_json_to(
        {"type": "configure", "data": {"metrics_interval": 2000, "buffer_size": 50, "compression": True}}
    )
    configured = await receive(communicator)
    assert configured["type"] == "configuration_updated"
    assert configured["data"] == {"metrics_interval": 2000, "buffer_size": 50, "compression": True}
    await communicator.send_json_to({"type": "configure", "data": {"metrics_interval": 5}})
    error = await receive(communicator)
    assert error["type"] == "connection_error" and "metrics_interval" in error["data"]["fields"]
    await communicator.send_json_to({"type": "no_such_message"})
    assert (await receive(communicator))["data"]["error_code"] == "INVALID_MESSAGE_FORMAT"
    await communicator.send_to(text_data="{not json")
    assert (await receive(communicator))["data"]["error_code"] == "INVALID_MESSAGE_FORMAT"
    await communicator.disconnect()


async def test_message_size_cap_closes_1009(amember, settings):
    settings.KAI_WS_MAX_MESSAGE_BYTES = 1024
    communicator, _ = await hello(await token_for(amember))
    await communicator.send_json_to({"type": "ping", "data": {"pad": "x" * 2000}})
    message = await receive(communicator)
    assert message["data"]["error_code"] == "MESSAGE_TOO_LARGE"
    await expect_closed(communicator, 1009)


async def test_message_rate_limit_warns_then_closes(amember, settings):
    settings.KAI_WS_MESSAGES_PER_MINUTE = 10
    communicator, _ = await hello(await token_for(amember))
    types = []
    for _ in range(10):
        await communicator.send_json_to({"type": "ping"})
    for _ in range(11):  # 10 pongs + the "approaching" warning at 9
        types.append((await receive(communicator))["type"])
    assert types.count("pong") == 10 and types.count("rate_limit_warning") == 1
    await communicator.send_json_to({"type": "ping"})  # the 11th: dropped, warned
    warning = await receive(communicator)
    assert warning["type"] == "rate_limit_warning" and warning["data"]["limit"] == 10
    await communicator.send_json_to({"type": "ping"})  # the 12th: closed
    await expect_closed(communicator, 1008)


async def test_connections_per_user_are_limited_across_the_platform(amember, settings):
    settings.KAI_WS_MAX_PER_USER = 2
    token = await token_for(amember)
    first, _ = await hello(token)
    second, _ = await hello(token)
    third, _ = await connect(token)
    refused = await receive(third)
    assert refused["data"]["error_code"] == "CONNECTION_LIMIT_EXCEEDED"
    await expect_closed(third, 1008)
    await first.disconnect()
    fourth, _ = await hello(token)
    await second.disconnect()
    await fourth.disconnect()


async def test_connections_per_ip_are_limited(make_member, settings):
    settings.KAI_WS_MAX_PER_IP = 2
    members = [await database_sync_to_async(make_member)() for _ in range(3)]
    sockets = [(await hello(await token_for(m)))[0] for m in members[:2]]
    third, _ = await connect(await token_for(members[2]))
    assert (await receive(third))["data"]["error_code"] == "CONNECTION_LIMIT_EXCEEDED"
    for socket in sockets:
        await socket.disconnect()


async def test_socket_closes_when_its_token_is_revoked(amember, settings):
    settings.KAI_WS_RECHECK_SECONDS = 0.3
    from rest_framework_simplejwt.tokens import AccessToken

    from apps.accounts.services import auth_issue_tokens, auth_logout

    tokens = await database_sync_to_async(auth_issue_tokens)(user=amember.user)
    communicator, _ = await hello(tokens["access_token"])
    claims = dict(AccessToken(tokens["access_token"]).payload)
    await database_sync_to_async(auth_logout)(user=amember.user, access_claims=claims, refresh_token=None)
    message = await receive(communicator)
    assert message["type"] == "connection_error" and message["data"]["error_code"] == "AUTHENTICATION_FAILED"
    await expect_closed(communicator, 1008)


async def test_socket_closes_when_its_api_key_is_revoked(amember, settings):
    settings.KAI_WS_RECHECK_SECONDS = 0.3
    from apps.accounts.services import api_key_create, api_key_revoke

    api_key, raw = await database_sync_to_async(api_key_create)(
        organization=amember.organization, created_by=amember.user, creator_role="owner", name="ws"
    )
    communicator, _ = await hello(raw)
    await database_sync_to_async(api_key_revoke)(api_key=api_key, actor=amember.user)
    assert (await receive(communicator))["type"] == "connection_error"
    await expect_closed(communicator, 1008)


async def test_socket_closes_when_its_token_expires(amember):
    from rest_framework_simplejwt.tokens import AccessToken

    token = AccessToken.for_user(amember.user)
    # JWT exp has whole-second resolution, so a 1 s lifetime can already be over by the
    # time the handshake runs on a busy machine: give the connect 3 s, then expect the close.
    token.set_exp(lifetime=timedelta(seconds=3))
    communicator, _ = await hello(str(token))
    message = await receive(communicator, timeout=8)
    assert message["data"]["error_code"] == "AUTHENTICATION_FAILED"
    await expect_closed(communicator, 1008)


async def test_reconnect_with_last_event_id_catches_up_without_duplicates(amember):
    token = await token_for(amember)
    first, _ = await hello(token)
    await subscribe(first, events=["note.added"])
    seen = []
    for i in range(3):
        await emit(amember.organization, "note.added", {"i": i})
        seen.append(await receive(first))
    await first.disconnect()
    missed = [await emit(amember.organization, "note.added", {"i": i}) for i in range(3, 6)]
    second, _ = await hello(token, query=f"last_event_id={seen[-1]['seq']}")
    await subscribe(second, events=["note.added"])
    replayed = [await receive(second) for _ in range(3)]
    assert [m["seq"] for m in replayed] == missed
    live = await emit(amember.organization, "note.added", {"i": 6})
    assert (await receive(second))["seq"] == live
    assert await second.receive_nothing(1.5)  # the reconciler must not resend anything
    await second.disconnect()


async def test_last_event_id_in_subscribe_data(amember):
    before = await emit(amember.organization, "note.added", {"i": 0})
    after = await emit(amember.organization, "note.added", {"i": 1})
    communicator, _ = await hello(await token_for(amember))
    await subscribe(communicator, events=["note.added"], last_event_id=before)
    assert (await receive(communicator))["seq"] == after
    await communicator.disconnect()


async def test_events_the_channel_layer_dropped_arrive_from_the_table(amember, settings, monkeypatch):
    settings.KAI_WS_RECONCILE_SECONDS = 0.3
    from apps.events import services

    communicator, _ = await hello(await token_for(amember))
    await subscribe(communicator, events=["note.added"])
    monkeypatch.setattr(services, "_deliver", lambda payload, groups: None)  # the layer loses everything
    dropped = [await emit(amember.organization, "note.added", {"i": i}) for i in range(5)]
    got = [await receive(communicator, timeout=5) for _ in range(5)]
    assert [m["seq"] for m in got] == dropped
    assert await communicator.receive_nothing(1)
    await communicator.disconnect()


async def test_a_failed_reconcile_does_not_end_the_catch_up(amember, settings, monkeypatch):
    """The table read of a reconcile fails once (the database was briefly unavailable): the next
    round still delivers what the channel layer dropped."""
    settings.KAI_WS_RECONCILE_SECONDS = 0.3
    from django.db import DatabaseError

    from apps.events import consumers, services

    communicator, _ = await hello(await token_for(amember))
    await subscribe(communicator, events=["note.added"])
    monkeypatch.setattr(services, "_deliver", lambda payload, groups: None)  # the layer loses everything
    original, failures = consumers.HubConsumer.table_events_after, []

    def flaky(self, after, limit):
        if not failures:
            failures.append(after)
            raise DatabaseError("couldn't get a connection after 1.00 sec")
        return original(self, after, limit)

    monkeypatch.setattr(consumers.HubConsumer, "table_events_after", flaky)
    dropped = [await emit(amember.organization, "note.added", {"i": i}) for i in range(3)]
    got = [await receive(communicator, timeout=5) for _ in range(3)]
    assert failures and [m["seq"] for m in got] == dropped
    await communicator.disconnect()


async def test_commands_are_role_checked_and_dispatched(make_member, monkeypatch):
    from kai_platform.realtime import commands
    from kai_platform.tenancy.roles import HUMAN_ROLES

    calls = []
    monkeypatch.setattr(commands, "_REGISTRY", {})

    @commands.register_command("restart", roles=HUMAN_ROLES)
    def restart(*, user, auth, agent_id, parameters):
        if agent_id == "missing":
            raise commands.CommandError("AGENT_NOT_FOUND", "Agent with ID 'missing' not found")
        calls.append((agent_id, parameters))
        return {"status": "restarting"}

    owner = await database_sync_to_async(make_member)()
    agent_role = await database_sync_to_async(make_member)("agent", organization=owner.organization)
    socket, _ = await hello(await token_for(owner))
    await socket.send_json_to(
        {"type": "command", "data": {"agent_id": "a1", "command": "restart", "parameters": {"graceful": True}}}
    )
    result = await receive(socket)
    assert result["type"] == "command_result" and result["data"]["result"] == {"status": "restarting"}
    assert calls == [("a1", {"graceful": True})]
    await socket.send_json_to({"type": "command", "data": {"agent_id": "missing", "command": "restart"}})
    error = await receive(socket)
    assert error["type"] == "command_error" and error["data"]["error_code"] == "AGENT_NOT_FOUND"
    await socket.send_json_to({"type": "command", "data": {"agent_id": "a1", "command": "explode"}})
    assert (await receive(socket))["data"]["error_code"] == "UNSUPPORTED_COMMAND"
    machine, _ = await hello(await token_for(agent_role))
    await machine.send_json_to({"type": "command", "data": {"agent_id": "a1", "command": "restart"}})
    denied = await receive(machine)
    assert denied["type"] == "command_error" and denied["data"]["error_code"] == "PERMISSION_DENIED"
    assert len(calls) == 1
    await socket.disconnect()
    await machine.disconnect()


async def test_disconnect_message_closes_normally(amember):
    communicator, _ = await hello(await token_for(amember))
    await communicator.send_json_to({"type": "disconnect", "data": {"reason": "user_initiated"}})
    await expect_closed(communicator, 1000)


async def test_concurrent_writers_reach_a_subscriber_exactly_once(amember, settings):
    settings.KAI_WS_RECONCILE_SECONDS = 0.3
    communicator, _ = await hello(await token_for(amember))
    await subscribe(communicator, events=["race.item"])

    async def writer(n):
        return [await emit(amember.organization, "race.item", {"w": n, "i": i}) for i in range(15)]

    published = sum(await asyncio.gather(writer(1), writer(2)), [])
    got = [await receive(communicator, timeout=5) for _ in range(len(published))]
    assert sorted(m["seq"] for m in got) == sorted(published)
    assert await communicator.receive_nothing(1)
    await communicator.disconnect()


async def test_agent_commands_over_the_hub(make_member):
    from apps.agents.models import Agent
    from apps.agents.services import agent_create

    owner = await database_sync_to_async(make_member)()
    machine = await database_sync_to_async(make_member)("agent", organization=owner.organization)
    agent = await database_sync_to_async(agent_create)(
        organization=owner.organization,
        actor=owner.user,
        data={"name": "Hubbed", "role": "Helper", "goal": "Help", "backstory": "Kind."},
    )
    socket, hello_message = await hello(await token_for(owner))
    assert {"start", "stop", "restart", "update_config", "get_status"} <= set(hello_message["data"]["commands"])
    await subscribe(socket, events=["agent_status"])

    async def command(name, **parameters):
        await socket.send_json_to(
            {"type": "command", "data": {"agent_id": str(agent.pk), "command": name, "parameters": parameters}}
        )
        while True:
            message = await receive(socket)
            if message["type"] in {"command_result", "command_error"}:
                return message

    started = await command("start")
    assert started["type"] == "command_result" and started["data"]["result"]["status"] == "active"
    status_event = await receive(socket)
    assert status_event["type"] == "agent_status" and status_event["data"]["new_status"] == "active"
    assert (await command("get_status"))["data"]["result"]["status"] == "active"
    updated = await command("update_config", config={"goal": "Help more"})
    assert updated["type"] == "command_result" and updated["data"]["result"]["version"] == 2
    assert (await database_sync_to_async(Agent.objects.get)(pk=agent.pk)).goal == "Help more"
    stopped = await command("stop", graceful=True)
    assert stopped["data"]["result"]["status"] == "idle"
    missing = await socket.send_json_to(
        {"type": "command", "data": {"agent_id": "00000000-0000-0000-0000-000000000000", "command": "get_status"}}
    )
    assert missing is None
    error = await receive(socket)
    while error["type"] != "command_error":
        error = await receive(socket)
    assert error["data"]["error_code"] == "AGENT_NOT_FOUND"

    robot, _ = await hello(await token_for(machine))
    await robot.send_json_to({"type": "command", "data": {"agent_id": str(agent.pk), "command": "restart"}})
    denied = await receive(robot)
    assert denied["type"] == "command_error" and denied["data"]["error_code"] == "PERMISSION_DENIED"
    await socket.disconnect()
    await robot.disconnect()
