"""The process-wide credential watcher (kai_platform/realtime/watch.py): every authenticated socket
of a process is re-checked in one batch per ``KAI_WS_RECHECK_SECONDS``, closed when its credential
is revoked or expires, and its connection leases are kept alive meanwhile."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async

from kai_platform.realtime import limits, watch
from tests.realtime.test_hub import expect_closed, hello, receive, token_for

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


def _code_file(task) -> str:
    coro = task.get_coro()
    code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
    return code.co_filename if code is not None else ""


async def _ping(communicator):
    await communicator.send_json_to({"type": "ping"})
    return await receive(communicator)


async def test_sockets_join_and_leave_the_watcher_and_no_task_per_socket(make_member):
    members = [await database_sync_to_async(make_member)() for _ in range(3)]
    sockets = [(await hello(await token_for(m)))[0] for m in members]
    assert watch.watched_count() == 3
    # an idle authenticated socket runs no task of the product's own: the only one is the process's
    # event relay (one per process, whatever the number of sockets)
    own = [task for task in asyncio.all_tasks() if "kai_platform/realtime" in _code_file(task)]
    assert [task.get_coro().__qualname__ for task in own] == ["_Relay._pump"]
    for socket in sockets:
        await socket.disconnect()
    assert watch.watched_count() == 0


async def test_revoking_one_token_closes_only_its_socket(make_member, settings):
    settings.KAI_WS_RECHECK_SECONDS = 0.3
    from rest_framework_simplejwt.tokens import AccessToken

    from apps.accounts.services import auth_issue_tokens, auth_logout

    revoked_member, kept_member = [await database_sync_to_async(make_member)() for _ in range(2)]
    tokens = await database_sync_to_async(auth_issue_tokens)(user=revoked_member.user)
    revoked, _ = await hello(tokens["access_token"])
    kept, _ = await hello(await token_for(kept_member))
    claims = dict(AccessToken(tokens["access_token"]).payload)
    await database_sync_to_async(auth_logout)(user=revoked_member.user, access_claims=claims, refresh_token=None)
    message = await receive(revoked)
    assert message["data"]["error_code"] == "AUTHENTICATION_FAILED"
    await expect_closed(revoked, 1008)
    await asyncio.sleep(0.7)  # two more re-checks: the valid socket stays open
    assert (await _ping(kept))["type"] == "pong"
    assert watch.watched_count() == 1
    await kept.disconnect()


async def test_the_watcher_keeps_the_connection_leases_alive(amember, settings):
    settings.KAI_WS_RECHECK_SECONDS = 0.2
    communicator, _ = await hello(await token_for(amember))
    user_key, ip_key = limits._keys(
        amember.user.pk, communicator.scope["client"][0] if communicator.scope.get("client") else "unknown"
    )
    redis = limits._redis()

    def scores():
        return [redis.zrange(key, 0, -1, withscores=True) for key in (user_key, ip_key)]

    first = await database_sync_to_async(scores)()
    assert all(len(entries) == 1 for entries in first)
    await asyncio.sleep(1.2)
    later = await database_sync_to_async(scores)()
    for before, after in zip(first, later):
        assert after[0][0] == before[0][0] and after[0][1] > before[0][1] + 0.5
        assert after[0][1] > time.time() + limits.LEASE_SECONDS - 5
    await communicator.disconnect()
    assert all(not entries for entries in await database_sync_to_async(scores)())


async def test_an_expiring_token_closes_at_its_expiry_not_at_the_next_tick(amember, settings):
    settings.KAI_WS_RECHECK_SECONDS = 60  # no tick during the test: only the expiry timer can close it
    from rest_framework_simplejwt.tokens import AccessToken

    token = AccessToken.for_user(amember.user)
    token.set_exp(lifetime=timedelta(seconds=3))
    communicator, _ = await hello(str(token))
    message = await receive(communicator, timeout=8)
    assert message["data"]["error_code"] == "AUTHENTICATION_FAILED"
    await expect_closed(communicator, 1008)
    assert watch.watched_count() == 0


async def test_a_hub_command_acts_with_fresh_rows_and_a_revoked_token_runs_nothing(amember, settings, monkeypatch):
    """The hub keeps ids, not the user's rows: a command loads them again with the credential, so a
    command sent after the token was revoked (before the next re-check) is not run; the socket closes."""
    settings.KAI_WS_RECHECK_SECONDS = 60
    from rest_framework_simplejwt.tokens import AccessToken

    from apps.accounts.services import auth_issue_tokens, auth_logout
    from kai_platform.realtime import commands
    from kai_platform.tenancy.roles import HUMAN_ROLES

    calls = []
    monkeypatch.setattr(commands, "_REGISTRY", {})

    @commands.register_command("restart", roles=HUMAN_ROLES)
    def restart(*, user, auth, agent_id, parameters):
        calls.append((str(user.pk), auth.role, str(auth.organization.pk)))
        return {"status": "restarting"}

    tokens = await database_sync_to_async(auth_issue_tokens)(user=amember.user)
    socket, _ = await hello(tokens["access_token"])
    await socket.send_json_to({"type": "command", "data": {"agent_id": "a1", "command": "restart"}})
    assert (await receive(socket))["type"] == "command_result"
    assert calls == [(str(amember.user.pk), amember.role, str(amember.organization.pk))]
    claims = dict(AccessToken(tokens["access_token"]).payload)
    await database_sync_to_async(auth_logout)(user=amember.user, access_claims=claims, refresh_token=None)
    await socket.send_json_to({"type": "command", "data": {"agent_id": "a1", "command": "restart"}})
    message = await receive(socket)
    assert message["type"] == "connection_error" and message["data"]["error_code"] == "AUTHENTICATION_FAILED"
    await expect_closed(socket, 1008)
    assert len(calls) == 1


@pytest.fixture
def amember(make_member):
    return make_member()
