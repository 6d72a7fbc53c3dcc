"""Auth flows (seed 000/002/003): register, login, refresh rotation, logout, session, magic links."""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.models import MagicLink, Membership, Organization, User
from kai_platform.api.errors import codes
from tests.factories import PASSWORD
from tests.helpers import assert_envelope

pytestmark = pytest.mark.django_db

TOKEN_KEYS = {"access_token", "refresh_token", "expires_in", "token_type", "user_id"}


def login(client, email, password=PASSWORD):
    return client.post("/api/v1/auth/login", {"email": email, "password": password}, format="json")


def test_register_creates_organization_and_owner(api_client):
    response = api_client.post(
        "/api/v1/auth/register",
        {
            "email": "Ann@Example.com",
            "password": "correct-horse-9",
            "org_name": "Acme Robotics",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert TOKEN_KEYS <= set(body)
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    assert body["user"]["email"] == "ann@example.com"
    assert body["organization"]["name"] == "Acme Robotics"
    assert body["organization"]["slug"] == "acme-robotics"
    user = User.objects.get(email="ann@example.com")
    membership = Membership.objects.get(user=user)
    assert membership.role == "owner" and membership.organization.slug == "acme-robotics"
    me = APIClient()
    me.credentials(HTTP_AUTHORIZATION=f"Bearer {body['access_token']}")
    assert me.get("/api/v1/auth/me").json()["organization"]["id"] == body["organization"]["id"]


def test_register_rejects_duplicates_and_weak_passwords(api_client, member):
    duplicate = api_client.post(
        "/api/v1/auth/register",
        {"email": member.user.email.upper(), "password": "correct-horse-9", "org_name": "Again"},
        format="json",
    )
    body = assert_envelope(duplicate, 409)
    assert body["errors"][0]["field"] == "email"
    weak = api_client.post(
        "/api/v1/auth/register", {"email": "new@example.com", "password": "123", "org_name": "W"}, format="json"
    )
    body = assert_envelope(weak, 400, codes.VALIDATION_ERROR)
    assert {e["field"] for e in body["errors"]} == {"password"}
    assert not User.objects.filter(email="new@example.com").exists()
    assert not Organization.objects.filter(name="W").exists()


def test_login_answers_seed_002_token_shape(api_client, member):
    response = login(api_client, member.user.email)
    assert response.status_code == 200
    body = response.json()
    assert TOKEN_KEYS <= set(body)
    assert body["user_id"] == str(member.user.pk)


@pytest.mark.parametrize("email,password", [("nobody@example.com", PASSWORD), (None, "wrong-password")])
def test_login_failures_are_401_invalid_credentials(api_client, member, email, password):
    response = login(api_client, email or member.user.email, password)
    assert_envelope(response, 401, codes.INVALID_CREDENTIALS)


def test_refresh_rotates_and_a_used_refresh_token_is_rejected(api_client, member):
    tokens = login(api_client, member.user.email).json()
    first = api_client.post("/api/v1/auth/refresh", {"refresh_token": tokens["refresh_token"]}, format="json")
    assert first.status_code == 200, first.content
    rotated = first.json()
    assert TOKEN_KEYS <= set(rotated)
    assert rotated["refresh_token"] != tokens["refresh_token"]
    reuse = api_client.post("/api/v1/auth/refresh", {"refresh": tokens["refresh_token"]}, format="json")
    assert_envelope(reuse, 401, codes.UNAUTHORIZED)
    # the rotated one works (once)
    again = api_client.post("/api/v1/auth/refresh", {"refresh_token": rotated["refresh_token"]}, format="json")
    assert again.status_code == 200


def test_refresh_requires_a_token(api_client):
    body = assert_envelope(api_client.post("/api/v1/auth/refresh", {}, format="json"), 400)
    assert body["errors"] == [{"field": "refresh_token", "message": "This field is required."}]
    assert_envelope(api_client.post("/api/v1/auth/refresh", {"refresh_token": "garbage"}, format="json"), 401)


@pytest.mark.django_db(transaction=True)
def test_parallel_uses_of_one_refresh_token_succeed_exactly_once(make_member):
    member = make_member()
    tokens = login(APIClient(), member.user.email).json()

    def use(_):
        try:
            return (
                APIClient()
                .post("/api/v1/auth/refresh", {"refresh_token": tokens["refresh_token"]}, format="json")
                .status_code
            )
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(pool.map(use, range(20)))
    assert statuses.count(200) == 1, statuses
    assert statuses.count(401) == 19, statuses


def test_logout_kills_the_access_token_at_once_and_the_refresh_token(api_client, member):
    tokens = login(api_client, member.user.email).json()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}")
    assert client.get("/api/v1/auth/me").status_code == 200
    out = client.post("/api/v1/auth/logout", {"refresh_token": tokens["refresh_token"]}, format="json")
    assert out.status_code == 200
    assert_envelope(client.get("/api/v1/auth/me"), 401, codes.UNAUTHORIZED)
    refresh = api_client.post("/api/v1/auth/refresh", {"refresh_token": tokens["refresh_token"]}, format="json")
    assert_envelope(refresh, 401)


def test_logout_refuses_another_users_refresh_token(make_member, client_for):
    a, b = make_member(), make_member()
    other = login(APIClient(), b.user.email).json()
    response = client_for(a).post("/api/v1/auth/logout", {"refresh_token": other["refresh_token"]}, format="json")
    assert_envelope(response, 400)


def test_expired_access_token_is_auth_003(member, settings):
    from rest_framework_simplejwt.tokens import AccessToken

    token = AccessToken.for_user(member.user)
    token.set_exp(lifetime=-timedelta(seconds=1))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    body = assert_envelope(client.get("/api/v1/auth/me"), 401, codes.TOKEN_EXPIRED)
    assert body["type"] == "token_expired"


def test_session_describes_the_credential(member, client_for):
    body = client_for(member).get("/api/v1/auth/session").json()
    assert set(body) >= {"user", "organization", "role", "session_id", "expires_at"}
    assert body["role"] == "owner" and body["organization"]["id"] == str(member.organization.pk)
    assert body["auth_type"] == "jwt"
    via_key = client_for(member, via="api_key").get("/api/v1/auth/session").json()
    assert via_key["auth_type"] == "api_key" and via_key["session_id"].startswith("key:")


def test_session_id_survives_refresh_rotation(api_client, member):
    tokens = login(api_client, member.user.email).json()
    rotated = api_client.post("/api/v1/auth/refresh", {"refresh_token": tokens["refresh_token"]}, format="json").json()
    ids = []
    for access in (tokens["access_token"], rotated["access_token"]):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
        ids.append(client.get("/api/v1/auth/session").json()["session_id"])
    assert ids[0] == ids[1]


def test_preferences_round_trip_and_validation(member, client_for):
    client = client_for(member)
    defaults = client.get("/api/v1/auth/preferences").json()
    assert defaults["theme"] == "system" and defaults["voice_enabled"] is False
    updated = client.put(
        "/api/v1/auth/preferences", {"theme": "dark", "notification_settings": {"push": True}}, format="json"
    )
    assert updated.status_code == 200
    body = updated.json()
    assert body["theme"] == "dark"
    assert body["notification_settings"] == {"email": True, "push": True, "in_app": True}
    bad = client.put("/api/v1/auth/preferences", {"theme": "neon", "voice_enabled": "maybe"}, format="json")
    errors = assert_envelope(bad, 400)["errors"]
    assert {e["field"] for e in errors} == {"theme", "voice_enabled"}
    assert client.get("/api/v1/auth/preferences").json()["theme"] == "dark"


def test_magic_link_signs_in_once(api_client, member, mailoutbox):
    response = api_client.post("/api/v1/auth/magic-link", {"email": member.user.email}, format="json")
    assert response.status_code == 202
    assert len(mailoutbox) == 1 and mailoutbox[0].to == [member.user.email]
    token = re.search(r"token=([\w-]+)", mailoutbox[0].body).group(1)
    first = api_client.post("/api/v1/auth/verify-magic", {"token": token}, format="json")
    assert first.status_code == 200 and TOKEN_KEYS <= set(first.json())
    assert_envelope(api_client.get(f"/api/v1/auth/verify-magic?token={token}"), 401, codes.INVALID_CREDENTIALS)


def test_magic_link_for_unknown_email_says_the_same_and_sends_nothing(api_client, mailoutbox):
    response = api_client.post("/api/v1/auth/magic-link", {"email": "ghost@example.com"}, format="json")
    assert response.status_code == 202 and mailoutbox == []


def test_magic_link_expires_after_15_minutes(api_client, member, mailoutbox):
    api_client.post("/api/v1/auth/magic-link", {"email": member.user.email}, format="json")
    token = re.search(r"token=([\w-]+)", mailoutbox[0].body).group(1)
    link = MagicLink.objects.get(user=member.user)
    assert timedelta(minutes=14) < link.expires_at - timezone.now() <= timedelta(minutes=15)
    MagicLink.objects.filter(pk=link.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert_envelope(api_client.post("/api/v1/auth/verify-magic", {"token": token}, format="json"), 401)


def test_magic_link_is_single_use_under_concurrency(transactional_db, make_member, mailoutbox):
    member = make_member()
    APIClient().post("/api/v1/auth/magic-link", {"email": member.user.email}, format="json")
    token = re.search(r"token=([\w-]+)", mailoutbox[0].body).group(1)
    results = []

    def use():
        try:
            results.append(APIClient().post("/api/v1/auth/verify-magic", {"token": token}, format="json").status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=use) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200, 401, 401, 401, 401, 401]


@pytest.mark.parametrize("header", ["Token abc", "Bearer", "Bearer a b", "Bearer not-a-jwt", "Bearer kai_nope_nope"])
def test_bad_credentials_are_401_envelopes(api_client, header):
    api_client.credentials(HTTP_AUTHORIZATION=header)
    response = api_client.get("/api/v1/auth/me")
    assert_envelope(response, 401)
    assert response["WWW-Authenticate"].startswith("Bearer")
