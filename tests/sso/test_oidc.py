"""OIDC sign-in through a real provider (django-oauth-toolkit in a process of its own) and the real
platform server (daphne): redirects, state, nonce, PKCE, JIT members, roles from claims."""

from __future__ import annotations

import re

import httpx2 as httpx
import pytest

from apps.audit.models import AuditEvent
from apps.sso import services
from apps.sso.models import SSOConnection, SSOIdentity
from tests.sso.conftest import CLIENT_ID, CLIENT_SECRET, idp_sign_in

pytestmark = [pytest.mark.django_db(transaction=True)]


def _connection(owner_client, member, idp, **extra) -> SSOConnection:
    body = {
        "protocol": "oidc",
        "issuer_url": idp.issuer,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "allowed_domains": ["acme.test"],
        "default_role": "developer",
        "role_claim": "groups",
        "role_mapping": {"kai-admins": "admin"},
        **extra,
    }
    response = owner_client.post("/api/v1/sso/connections", body, format="json")
    assert response.status_code == 201, response.json()
    connection = SSOConnection.objects.get(pk=response.json()["id"])
    services.connection_confirm_domains(connection=connection, actor=member.user)
    return connection


def _sign_in(server, idp, member, username, **params) -> tuple[httpx.Client, httpx.Response]:
    client = httpx.Client(follow_redirects=True, timeout=20)
    page = client.get(f"{server.url}/api/v1/auth/sso/{member.organization.slug}/login", params=params)
    assert str(page.url).startswith(idp.url), page.text[:300]  # redirected to the IdP's login form
    return client, idp_sign_in(client, page, username, "idp-pass-123")


@pytest.mark.slow
def test_oidc_sign_in_creates_member_then_role_follows_claims(oidc_idp, kai_server, owner_client, member):
    connection = _connection(owner_client, member, oidc_idp)
    oidc_idp.control(redirect_uris=[f"{kai_server.url}/sso/oidc/{connection.provider_id}/login/callback/"])
    oidc_idp.add_user("alice", "alice@acme.test", groups=["kai-admins"], name="Alice")

    client, done = _sign_in(kai_server, oidc_idp, member, "alice")
    assert done.status_code == 200, done.text
    authorize = next(r for r in done.history if str(r.url).startswith(f"{oidc_idp.url}/o/authorize/"))
    assert "code_challenge=" in str(authorize.url) and "code_challenge_method=S256" in str(authorize.url)
    assert "nonce=" in str(authorize.url) and "state=" in str(authorize.url)  # PKCE, state and nonce sent
    code = done.json()["code"]

    tokens = httpx.post(f"{kai_server.url}/api/v1/auth/sso/exchange", json={"code": code}).json()
    assert set(tokens) >= {"access_token", "refresh_token", "expires_in", "token_type", "user_id", "user"}
    me = httpx.get(
        f"{kai_server.url}/api/v1/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    ).json()
    assert me["email"] == "alice@acme.test" and me["role"] == "admin"
    assert me["organization"]["slug"] == member.organization.slug

    # the code works once; the IdP's answer (callback URL) cannot be replayed
    again = httpx.post(f"{kai_server.url}/api/v1/auth/sso/exchange", json={"code": code})
    assert again.status_code == 401
    callback = str(done.url)
    replay = client.get(callback)
    assert replay.status_code == 401 and "state" in replay.json()["detail"]

    # the IdP removes her from the admins group: her role follows on the next sign-in
    oidc_idp.add_user("alice", "alice@acme.test", groups=[], name="Alice")
    _, second = _sign_in(kai_server, oidc_idp, member, "alice")
    tokens = httpx.post(f"{kai_server.url}/api/v1/auth/sso/exchange", json={"code": second.json()["code"]}).json()
    me = httpx.get(
        f"{kai_server.url}/api/v1/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    ).json()
    assert me["role"] == "developer"
    assert SSOIdentity.objects.filter(connection=connection, email="alice@acme.test").count() == 1
    actions = list(AuditEvent.objects.filter(organization=member.organization).values_list("action", flat=True))
    for action in (
        "sso.connection.create",
        "sso.user.create",
        "sso.link",
        "sso.membership.create",
        "sso.login",
        "sso.role.change",
        "sso.login.refused",
    ):
        assert action in actions, action


@pytest.mark.slow
def test_oidc_refuses_other_domains_and_unproved_domains(oidc_idp, kai_server, owner_client, member):
    connection = _connection(owner_client, member, oidc_idp)
    oidc_idp.control(redirect_uris=[f"{kai_server.url}/sso/oidc/{connection.provider_id}/login/callback/"])
    oidc_idp.add_user("mallory", "mallory@evil.test")
    _, done = _sign_in(kai_server, oidc_idp, member, "mallory")
    assert done.status_code == 403 and "evil.test" in done.json()["detail"]

    SSOConnection.objects.filter(pk=connection.pk).update(domains_confirmed_by_staff=False)
    oidc_idp.add_user("bob", "bob@acme.test")
    _, done = _sign_in(kai_server, oidc_idp, member, "bob")
    assert done.status_code == 403 and "not proved" in done.json()["detail"]
    assert not SSOIdentity.objects.filter(email__in=["mallory@evil.test", "bob@acme.test"]).exists()


@pytest.mark.slow
def test_api_sign_in_sends_code_to_registered_redirect_uri(oidc_idp, kai_server, owner_client, member):
    connection = _connection(owner_client, member, oidc_idp, redirect_uris=["https://app.acme.test/sso/done"])
    oidc_idp.control(redirect_uris=[f"{kai_server.url}/sso/oidc/{connection.provider_id}/login/callback/"])
    oidc_idp.add_user("carol", "carol@acme.test")
    bad = httpx.get(
        f"{kai_server.url}/api/v1/auth/sso/{member.organization.slug}/login",
        params={"redirect_uri": "https://evil.test/steal"},
    )
    assert bad.status_code == 400
    client = httpx.Client(follow_redirects=True, timeout=20)
    page = client.get(
        f"{kai_server.url}/api/v1/auth/sso/{member.organization.slug}/login",
        params={"redirect_uri": "https://app.acme.test/sso/done"},
    )
    client.follow_redirects = False  # follow by hand: stop before the app (it does not exist here)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    response = client.post(
        str(page.url),
        data={"csrfmiddlewaretoken": token, "username": "carol", "password": "idp-pass-123"},
        headers={"Referer": str(page.url)},
    )
    while response.is_redirect and not response.headers["location"].startswith("https://app.acme.test"):
        response = client.get(response.url.join(response.headers["location"]))
    location = response.headers["location"]
    assert location.startswith("https://app.acme.test/sso/done?code=")
    exchanged = httpx.post(f"{kai_server.url}/api/v1/auth/sso/exchange", json={"code": location.split("code=")[1]})
    assert exchanged.status_code == 200 and exchanged.json()["user"]["email"] == "carol@acme.test"
