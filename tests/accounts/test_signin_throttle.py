"""Per-account brakes on guessing (apps/accounts/throttle.py): sign-in, sign-in links, refresh
tokens, API keys; a lock is audited and announced, and answers the right secret with 429 too."""

from __future__ import annotations

import re

import pytest
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.events.models import Event
from kai_platform.api.errors import codes
from tests.factories import PASSWORD
from tests.helpers import assert_envelope

pytestmark = pytest.mark.django_db
B = "/api/v1"


def login(email, password, address="192.0.2.1"):
    return APIClient().post(
        f"{B}/auth/login", {"email": email, "password": password}, format="json", REMOTE_ADDR=address
    )


def test_five_wrong_passwords_lock_the_account_even_for_the_right_one_from_another_address(member):
    email = member.user.email
    for _ in range(5):
        assert_envelope(login(email, "wrong-password"), 401, codes.INVALID_CREDENTIALS)
    for address in ("192.0.2.1", "198.51.100.99"):
        response = login(email, PASSWORD, address)
        assert_envelope(response, 429, codes.RATE_LIMIT_EXCEEDED)
        assert 55 <= int(response["Retry-After"]) <= 60


def test_the_lock_is_audited_and_announced_to_the_organization(member):
    for _ in range(5):
        login(member.user.email, "wrong-password", "203.0.113.5")
    row = AuditEvent.objects.get(organization=member.organization, action="auth.lock")
    assert row.after["user_id"] == str(member.user.pk) and row.after["locked_seconds"] == 60
    assert row.after["address"] == "203.0.113.5" and row.after["scope"] == "account"
    event = Event.objects.get(organization=member.organization, type="auth.account_locked")
    assert event.severity == "warning" and event.owner_id == member.user.pk and event.data["attempt"] == "password"


def test_a_success_resets_the_count_and_the_guessing_address_keeps_its_own(member, settings):
    email = member.user.email
    for _ in range(4):
        login(email, "wrong-password", "203.0.113.5")
    assert login(email, PASSWORD, "192.0.2.1").status_code == 200  # the owner, elsewhere: account count reset
    for _ in range(4):
        assert login(email, "wrong-password", "192.0.2.77").status_code == 401  # a fresh account count
    # the first address had 4 failures of its own: its 5th locks the account from there
    assert login(email, "wrong-password", "203.0.113.5").status_code == 401
    assert_envelope(login(email, PASSWORD, "203.0.113.5"), 429, codes.RATE_LIMIT_EXCEEDED)


def test_an_unknown_email_is_answered_exactly_like_a_wrong_password(member):
    known = [login(member.user.email, "wrong-password") for _ in range(6)]
    unknown = [login("ghost@example.com", "wrong-password") for _ in range(6)]
    for a, b in zip(known, unknown):
        body_a, body_b = a.json(), b.json()
        body_a.pop("request_id"), body_b.pop("request_id")
        assert (a.status_code, body_a, a.get("Retry-After")) == (b.status_code, body_b, b.get("Retry-After"))
    assert [r.status_code for r in unknown] == [401] * 5 + [429]


def test_unknown_email_costs_a_password_hash(monkeypatch):
    import apps.accounts.services as services

    hashed = []
    monkeypatch.setattr(services, "make_password", lambda password: hashed.append(password))
    login("ghost@example.com", "guess-1")
    assert hashed == ["guess-1"]


def test_magic_link_requests_are_limited_per_account_and_unlocked_by_signing_in(member, mailoutbox):
    client = APIClient()
    for _ in range(5):
        assert client.post(f"{B}/auth/magic-link", {"email": member.user.email}, format="json").status_code == 202
    locked = client.post(f"{B}/auth/magic-link", {"email": member.user.email}, format="json")
    assert_envelope(locked, 429, codes.RATE_LIMIT_EXCEEDED) and int(locked["Retry-After"]) > 0
    assert len(mailoutbox) == 5
    ghost = [
        client.post(f"{B}/auth/magic-link", {"email": "ghost@example.com"}, format="json").status_code for _ in range(6)
    ]
    assert ghost == [202] * 5 + [429]  # the same answers for an address with no account
    token = re.search(r"token=([\w-]+)", mailoutbox[-1].body).group(1)
    assert client.post(f"{B}/auth/verify-magic", {"token": token}, format="json").status_code == 200
    assert client.post(f"{B}/auth/magic-link", {"email": member.user.email}, format="json").status_code == 202


def test_forged_refresh_tokens_and_bad_links_lock_the_address(api_client, member):
    for _ in range(20):
        assert_envelope(api_client.post(f"{B}/auth/refresh", {"refresh_token": "forged.token.x"}, format="json"), 401)
    tokens = login(member.user.email, PASSWORD, "127.0.0.1").json()
    locked = api_client.post(f"{B}/auth/refresh", {"refresh_token": tokens["refresh_token"]}, format="json")
    assert_envelope(locked, 429, codes.RATE_LIMIT_EXCEEDED)
    assert_envelope(api_client.post(f"{B}/auth/verify-magic", {"token": "x" * 20}, format="json"), 429)
    other = APIClient().post(
        f"{B}/auth/refresh", {"refresh_token": tokens["refresh_token"]}, format="json", REMOTE_ADDR="192.0.2.44"
    )
    assert other.status_code == 200  # another address is not locked


def test_a_replayed_refresh_token_is_no_guess(api_client, member):
    tokens = login(member.user.email, PASSWORD, "127.0.0.1").json()
    assert (
        api_client.post(f"{B}/auth/refresh", {"refresh_token": tokens["refresh_token"]}, format="json").status_code
        == 200
    )
    for _ in range(25):
        assert_envelope(
            api_client.post(f"{B}/auth/refresh", {"refresh_token": tokens["refresh_token"]}, format="json"), 401
        )


def test_api_key_guessing_locks_the_address_for_keys(member, client_for):
    good = client_for(member, via="api_key")
    assert good.get(f"{B}/auth/me").status_code == 200
    guesser = APIClient()
    guesser.credentials(HTTP_AUTHORIZATION="Bearer kai_abcdefghij_" + "x" * 40)
    assert [guesser.get(f"{B}/auth/me").status_code for _ in range(21)] == [401] * 20 + [429]
    locked = good.get(f"{B}/auth/me")  # same address (127.0.0.1): even a right key waits
    assert_envelope(locked, 429, codes.RATE_LIMIT_EXCEEDED) and int(locked["Retry-After"]) > 0
    assert good.get(f"{B}/auth/me", REMOTE_ADDR="192.0.2.8").status_code == 200
