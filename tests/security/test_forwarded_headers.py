"""Through a real daphne process: forwarded headers move the counted client address only when
the peer is a trusted proxy (HTTP limits, sign-in locks, audit rows, socket caps), and an
account is locked after five wrong passwords whatever address the sixth comes from."""

from __future__ import annotations

import asyncio
import json

import httpx2
import pytest
import websockets

from apps.audit.models import AuditEvent
from tests.conftest import jwt_for
from tests.factories import PASSWORD
from tests.helpers import LiveServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(scope="module")
def untrusted(django_db_setup):
    """A server that trusts no proxy (``make run``'s default), shared by this module's tests."""
    server = LiveServer(KAI_TRUSTED_PROXIES="", KAI_WS_MAX_PER_IP="1")
    yield server
    server.stop()


@pytest.fixture
def behind_proxy():
    """The test process plays the reverse proxy: its address, 127.0.0.1, is trusted."""
    server = LiveServer(KAI_TRUSTED_PROXIES="127.0.0.1/32", KAI_WS_MAX_PER_IP="1")
    yield server
    server.stop()


def _remaining(client, **headers) -> int:
    response = client.get("/api/v1/auth/session", headers=headers)  # anonymous: counted per address
    assert response.status_code == 401 and response.headers["X-RateLimit-Type"] == "ip"
    return int(response.headers["X-RateLimit-Remaining"])


def _login(client, email, password, **headers):
    return client.post("/api/v1/auth/login", json={"email": email, "password": password}, headers=headers)


def _locked_after_five_wrong_passwords(client, member) -> str:
    """Five wrong passwords from one forwarded address, then the right one from a new forwarded
    address: 429 with Retry-After. Returns the address the lock's audit row recorded."""
    email = member.user.email
    wrong = [_login(client, email, "wrong-password", **{"X-Forwarded-For": "203.0.113.50"}) for _ in range(5)]
    assert [r.status_code for r in wrong] == [401] * 5
    locked = _login(client, email, PASSWORD, **{"X-Forwarded-For": "192.0.2.99"})
    assert locked.status_code == 429 and locked.json()["code"] == "GENERAL_002"
    assert 1 <= int(locked.headers["Retry-After"]) <= 60
    row = AuditEvent.objects.get(organization=member.organization, action="auth.lock")
    assert row.ip == row.after["address"]
    return row.ip


async def _hub(server, token, forwarded_for):
    socket = await websockets.connect(
        f"{server.ws_url}/api/v1/ws?token={token}", additional_headers={"X-Forwarded-For": forwarded_for}
    )
    return socket, json.loads(await asyncio.wait_for(socket.recv(), 10))


async def _two_sockets(server, token):
    first, hello = await _hub(server, token, "198.51.100.1")
    second, answer = await _hub(server, token, "198.51.100.2")
    await first.close()
    await second.close()
    return hello["type"], answer


def test_a_spoofed_forwarded_for_from_an_untrusted_peer_changes_nothing(untrusted, make_member):
    member = make_member("owner")
    with httpx2.Client(base_url=untrusted.url, timeout=30) as client:
        counts = [_remaining(client, **{"X-Forwarded-For": f"203.0.113.{i}"}) for i in range(1, 4)]
        counts.append(_remaining(client, Forwarded="for=203.0.113.77"))
        assert counts == sorted(counts, reverse=True) and len(set(counts)) == 4  # one counter: the peer's

        assert _locked_after_five_wrong_passwords(client, member) == "127.0.0.1"  # the peer, not a header

    token = jwt_for(member.user)["access_token"]
    first, second = asyncio.run(_two_sockets(untrusted, token))
    assert first == "connection_established"  # the per-IP cap of 1 sees one address for both
    assert second["type"] == "connection_error" and second["data"]["error_code"] == "CONNECTION_LIMIT_EXCEEDED"


def test_behind_a_trusted_proxy_the_forwarded_address_counts(behind_proxy, make_member):
    member = make_member("owner")
    with httpx2.Client(base_url=behind_proxy.url, timeout=30) as client:
        first = _remaining(client, **{"X-Forwarded-For": "203.0.113.1"})
        assert _remaining(client, **{"X-Forwarded-For": "203.0.113.2"}) == first  # a counter of its own
        assert _remaining(client, **{"X-Forwarded-For": "6.6.6.6, 203.0.113.1"}) == first - 1  # rightmost counts
        assert _remaining(client, Forwarded='for="[2001:db8::7]:443";proto=https') == first
        assert _remaining(client) == first  # no header: the proxy itself

        # the sixth attempt comes from an address never seen before: the account is locked anyway
        assert _locked_after_five_wrong_passwords(client, member) == "203.0.113.50"

    token = jwt_for(member.user)["access_token"]
    first, second = asyncio.run(_two_sockets(behind_proxy, token))
    assert first == "connection_established" and second["type"] == "connection_established"  # two addresses


def test_an_unknown_email_is_answered_like_a_wrong_password(untrusted, make_member):
    member = make_member()
    with httpx2.Client(base_url=untrusted.url, timeout=30) as client:
        for attempt in range(6):
            known = _login(client, member.user.email, "wrong-password")
            unknown = _login(client, "nobody-here@example.com", "wrong-password")
            assert known.status_code == unknown.status_code == (401 if attempt < 5 else 429)
            strip = lambda r: {k: v for k, v in r.json().items() if k != "request_id"}  # noqa: E731
            assert strip(known) == strip(unknown)
            assert ("Retry-After" in known.headers) == ("Retry-After" in unknown.headers)


async def _socket_answers(server, keys):
    answers = []
    for key in keys:
        async with websockets.connect(f"{server.ws_url}/api/v1/ws?token={key}") as socket:
            message = json.loads(await asyncio.wait_for(socket.recv(), 10))
            answers.append(message["data"].get("error_code") if message["type"] == "connection_error" else "ok")
    return answers


def test_guessing_api_keys_over_sockets_locks_the_address_for_every_key(untrusted, make_member):
    from apps.accounts.services import api_key_create

    member = make_member("owner")
    _, good = api_key_create(
        organization=member.organization, created_by=member.user, creator_role="owner", name="socket key"
    )
    answers = asyncio.run(_socket_answers(untrusted, ["kai_abcdefghij_" + "x" * 40] * 20 + [good]))
    assert answers == ["AUTHENTICATION_FAILED"] * 20 + ["RATE_LIMIT_EXCEEDED"]
