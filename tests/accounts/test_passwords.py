"""Password policy at register, change and reset; a changed password signs the other sessions out."""

from __future__ import annotations

import re

import pytest
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from kai_platform.api.errors import codes
from tests.factories import PASSWORD
from tests.helpers import assert_envelope

pytestmark = pytest.mark.django_db
B = "/api/v1"
NEW = "a-much-better-passphrase-7"


def _session(email, password=PASSWORD):
    tokens = APIClient().post(f"{B}/auth/login", {"email": email, "password": password}, format="json").json()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}")
    return client, tokens


def _refresh(tokens):
    return APIClient().post(f"{B}/auth/refresh", {"refresh_token": tokens["refresh_token"]}, format="json")


@pytest.mark.parametrize("password", ["password123", "qwertyuiop", "12345678901"])
def test_register_refuses_common_and_numeric_passwords(api_client, password):
    body = assert_envelope(
        api_client.post(f"{B}/auth/register", {"email": "new@example.com", "password": password}, format="json"),
        400,
        codes.VALIDATION_ERROR,
    )
    assert body["errors"][0]["field"] == "password"


def test_change_checks_the_current_password_and_the_policy(member):
    client, _ = _session(member.user.email)
    wrong = client.post(f"{B}/auth/password", {"current_password": "nope", "new_password": NEW}, format="json")
    assert assert_envelope(wrong, 403, codes.INVALID_CREDENTIALS)["errors"][0]["field"] == "current_password"
    common = client.post(
        f"{B}/auth/password", {"current_password": PASSWORD, "new_password": "password1"}, format="json"
    )
    assert assert_envelope(common, 400)["errors"][0]["field"] == "new_password"
    member.user.refresh_from_db()
    assert member.user.check_password(PASSWORD)


def test_a_changed_password_revokes_the_other_sessions_refresh_tokens(member):
    client, mine = _session(member.user.email)
    _, other = _session(member.user.email)
    _, third = _session(member.user.email)
    response = client.post(f"{B}/auth/password", {"current_password": PASSWORD, "new_password": NEW}, format="json")
    assert response.status_code == 200 and response.json()["sessions_revoked"] == 2
    assert_envelope(_refresh(other), 401) and assert_envelope(_refresh(third), 401)
    assert _refresh(mine).status_code == 200  # this session goes on
    assert (
        APIClient().post(f"{B}/auth/login", {"email": member.user.email, "password": NEW}, format="json").status_code
        == 200
    )
    assert AuditEvent.objects.filter(organization=member.organization, action="user.password_change").exists()


def test_wrong_current_passwords_count_towards_the_sign_in_lock(member):
    client, _ = _session(member.user.email)
    for _ in range(5):
        client.post(f"{B}/auth/password", {"current_password": "nope", "new_password": NEW}, format="json")
    locked = client.post(f"{B}/auth/password", {"current_password": PASSWORD, "new_password": NEW}, format="json")
    assert_envelope(locked, 429, codes.RATE_LIMIT_EXCEEDED)


def test_reset_by_mail_once_with_the_policy_and_every_session_signed_out(member, mailoutbox):
    _, before = _session(member.user.email)
    api = APIClient()
    assert api.post(f"{B}/auth/password-reset", {"email": member.user.email}, format="json").status_code == 202
    assert api.post(f"{B}/auth/password-reset", {"email": "ghost@example.com"}, format="json").status_code == 202
    assert len(mailoutbox) == 1 and mailoutbox[0].to == [member.user.email]
    token = re.search(r'"token": "([^"]+)"', mailoutbox[0].body).group(1)
    weak = api.post(f"{B}/auth/password-reset/confirm", {"token": token, "new_password": "letmein1"}, format="json")
    assert assert_envelope(weak, 400)["errors"][0]["field"] == "new_password"
    done = api.post(f"{B}/auth/password-reset/confirm", {"token": token, "new_password": NEW}, format="json")
    assert done.status_code == 200
    assert_envelope(_refresh(before), 401)
    again = api.post(f"{B}/auth/password-reset/confirm", {"token": token, "new_password": NEW + "x"}, format="json")
    assert assert_envelope(again, 400)["errors"][0]["field"] == "token"  # single use
    assert _session(member.user.email, NEW)[1]["access_token"]
    assert AuditEvent.objects.filter(organization=member.organization, action="user.password_reset").exists()


def test_reset_lifts_the_sign_in_lock(member, mailoutbox):
    api = APIClient()
    for _ in range(5):
        api.post(f"{B}/auth/login", {"email": member.user.email, "password": "nope"}, format="json")
    api.post(f"{B}/auth/password-reset", {"email": member.user.email}, format="json")
    token = re.search(r'"token": "([^"]+)"', mailoutbox[0].body).group(1)
    assert (
        api.post(f"{B}/auth/password-reset/confirm", {"token": token, "new_password": NEW}, format="json").status_code
        == 200
    )
    assert api.post(f"{B}/auth/login", {"email": member.user.email, "password": NEW}, format="json").status_code == 200


def test_bad_reset_tokens_are_400_and_counted_per_address(api_client):
    for token in ["-", "nonsense", "Zm9v.abc", "MTIz.1-2"] + ["x.y"] * 16:
        response = api_client.post(
            f"{B}/auth/password-reset/confirm", {"token": token, "new_password": NEW}, format="json"
        )
        assert response.status_code == 400
    assert_envelope(
        api_client.post(f"{B}/auth/password-reset/confirm", {"token": "x.y", "new_password": NEW}, format="json"),
        429,
        codes.RATE_LIMIT_EXCEEDED,
    )
