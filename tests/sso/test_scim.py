"""SCIM 2.0: users and groups per organization by bearer SCIM token; deprovisioning takes
access away on the next request (tokens, API keys, sockets) through the real server."""

from __future__ import annotations

import asyncio
import json

import httpx2 as httpx
import pytest
import websockets
from channels.db import database_sync_to_async
from rest_framework.test import APIClient

from apps.accounts.models import Membership, User
from apps.audit.models import AuditEvent
from apps.sso import scim, services
from apps.sso.models import ScimUser, SSOConnection
from tests.conftest import jwt_for
from tests.helpers import LiveServer

SCIM = "application/scim+json"


def _setup(member, *, mapping=None, default_role="developer"):
    connection = services.connection_create(
        organization=member.organization,
        actor=member.user,
        data={
            "protocol": "oidc",
            "issuer_url": "https://idp.acme.test",
            "client_id": "c",
            "client_secret": "s",
            "allowed_domains": ["acme.test"],
            "default_role": default_role,
            "role_mapping": mapping or {"Platform Admins": "admin"},
        },
    )
    services.connection_confirm_domains(connection=connection, actor=member.user)
    _, raw = scim.token_create(organization=member.organization, actor=member.user, name="okta")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return connection, client, raw


def _post(client, path, body):
    return client.post(path, json.dumps(body), content_type=SCIM)


def _user(email, **extra):
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": email,
        "name": {"givenName": "Dana", "familyName": "Scully"},
        "emails": [{"value": email, "primary": True}],
        "externalId": f"ext-{email}",
        "active": True,
        **extra,
    }


@pytest.mark.django_db
def test_scim_user_lifecycle_and_groups_map_roles(member):
    _, client, _ = _setup(member)
    created = _post(client, "/scim/v2/Users", _user("dana@acme.test"))
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["userName"] == "dana@acme.test" and body["active"] is True and created["Location"].endswith(body["id"])
    membership = Membership.objects.get(organization=member.organization, user_id=body["id"])
    assert membership.role == "developer"
    assert _post(client, "/scim/v2/Users", _user("dana@acme.test")).status_code == 409

    listed = client.get('/scim/v2/Users?filter=userName eq "dana@acme.test"').json()
    assert listed["totalResults"] == 1 and listed["Resources"][0]["id"] == body["id"]

    group = _post(client, "/scim/v2/Groups", {"displayName": "Platform Admins", "members": [{"value": body["id"]}]})
    assert group.status_code == 201
    membership.refresh_from_db()
    assert membership.role == "admin"
    patched = client.patch(
        f"/scim/v2/Groups/{group.json()['id']}",
        json.dumps(
            {
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "remove", "path": f'members[value eq "{body["id"]}"]'}],
            }
        ),
        content_type=SCIM,
    )
    assert patched.status_code == 200 and patched.json()["members"] == []
    membership.refresh_from_db()
    assert membership.role == "developer"

    put = client.put(
        f"/scim/v2/Users/{body['id']}",
        json.dumps(_user("dana@acme.test", name={"formatted": "D. S."})),
        content_type=SCIM,
    )
    assert put.status_code == 200 and put.json()["name"]["formatted"] == "D. S."

    off = client.patch(
        f"/scim/v2/Users/{body['id']}",
        json.dumps(
            {
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "value": {"active": False}}],
            }
        ),
        content_type=SCIM,
    )  # Entra's form
    assert off.status_code == 200 and off.json()["active"] is False
    assert not Membership.objects.filter(organization=member.organization, user_id=body["id"]).exists()
    assert User.objects.get(pk=body["id"]).is_active is False  # the organization owns acme.test

    on = client.patch(
        f"/scim/v2/Users/{body['id']}",
        json.dumps({"Operations": [{"op": "replace", "path": "active", "value": True}]}),
        content_type=SCIM,
    )  # Okta's form
    assert on.json()["active"] is True
    assert Membership.objects.get(organization=member.organization, user_id=body["id"]).role == "developer"

    assert client.delete(f"/scim/v2/Users/{body['id']}").status_code == 204
    assert client.get(f"/scim/v2/Users/{body['id']}").status_code == 404
    actions = set(AuditEvent.objects.filter(organization=member.organization).values_list("action", flat=True))
    assert {
        "scim.user.create",
        "scim.group.create",
        "scim.group.update",
        "scim.role.change",
        "scim.user.update",
        "scim.user.deactivate",
        "scim.user.activate",
        "scim.user.delete",
    } <= actions


@pytest.mark.django_db
def test_scim_token_is_bound_to_its_organization(member, make_member):
    _, client, _ = _setup(member)
    other = make_member("owner")
    _, other_client, _ = _setup(other)
    dana = _post(client, "/scim/v2/Users", _user("dana@acme.test")).json()
    assert other_client.get(f"/scim/v2/Users/{dana['id']}").status_code == 404
    assert other_client.delete(f"/scim/v2/Users/{dana['id']}").status_code == 404
    assert other_client.get("/scim/v2/Users").json()["totalResults"] == 0
    anonymous = APIClient().get("/scim/v2/Users")
    assert anonymous.status_code == 401 and anonymous.json()["schemas"] == [
        "urn:ietf:params:scim:api:messages:2.0:Error"
    ]
    bad = APIClient(HTTP_AUTHORIZATION="Bearer scim_nope_nope").get("/scim/v2/Users")
    assert bad.status_code == 401


@pytest.mark.django_db
def test_scim_does_not_switch_off_accounts_of_domains_the_org_does_not_own(member, make_member):
    _, client, _ = _setup(member)
    outsider = make_member("user")  # a member of another organization, gmail-like domain
    body = _post(client, "/scim/v2/Users", _user(outsider.user.email)).json()
    client.patch(
        f"/scim/v2/Users/{body['id']}",
        json.dumps({"Operations": [{"op": "replace", "path": "active", "value": False}]}),
        content_type=SCIM,
    )
    outsider.user.refresh_from_db()
    assert outsider.user.is_active is True  # only this organization's membership went
    assert not Membership.objects.filter(organization=member.organization, user=outsider.user).exists()
    assert Membership.objects.filter(organization=outsider.organization, user=outsider.user).exists()


def test_owners_manage_scim_tokens_others_cannot(member, make_member, client_for):
    owner = client_for(member)
    created = owner.post("/api/v1/sso/scim-tokens", {"name": "entra"}, format="json")
    assert created.status_code == 201 and created.json()["token"].startswith("scim_")
    admin = make_member("admin", organization=member.organization)
    assert client_for(admin).get("/api/v1/sso/scim-tokens").status_code == 403
    assert owner.delete(f"/api/v1/sso/scim-tokens/{created.json()['id']}").status_code == 204
    revoked = APIClient(HTTP_AUTHORIZATION=f"Bearer {created.json()['token']}").get("/scim/v2/Users")
    assert revoked.status_code == 401


test_owners_manage_scim_tokens_others_cannot = pytest.mark.django_db(test_owners_manage_scim_tokens_others_cannot)


@pytest.fixture
def quick_server(transactional_db):
    server = LiveServer(KAI_WS_RECHECK_SECONDS="0.5")
    yield server
    server.stop()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_deprovisioned_user_loses_tokens_keys_and_sockets_at_once(quick_server, make_member):
    member = await database_sync_to_async(make_member)("owner")
    _, _, raw = await database_sync_to_async(_setup)(member)
    user = await database_sync_to_async(User.objects.create_user)(email="eve@acme.test", password="pw-eve-12345")
    await database_sync_to_async(Membership.objects.create)(
        organization=member.organization, user=user, role="developer"
    )
    tokens = await database_sync_to_async(jwt_for)(user)
    base = f"{quick_server.url}/api/v1"
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    async with httpx.AsyncClient(timeout=15) as http:
        key = (await http.post(f"{base}/auth/tokens", json={"name": "cli"}, headers=auth)).json()["key"]
        scim_headers = {"Authorization": f"Bearer {raw}", "Content-Type": SCIM}
        created = await http.post(
            f"{quick_server.url}/scim/v2/Users", headers=scim_headers, content=json.dumps(_user("eve@acme.test"))
        )
        assert created.status_code == 201  # links the existing member
        async with websockets.connect(f"{quick_server.ws_url}/api/v1/ws?token={tokens['access_token']}") as socket:
            assert json.loads(await socket.recv())["type"] == "connection_established"
            assert (await http.get(f"{base}/auth/me", headers=auth)).status_code == 200
            off = await http.patch(
                f"{quick_server.url}/scim/v2/Users/{user.pk}",
                headers=scim_headers,
                content=json.dumps({"Operations": [{"op": "replace", "path": "active", "value": False}]}),
            )
            assert off.status_code == 200
            assert (await http.get(f"{base}/auth/me", headers=auth)).status_code == 401
            assert (await http.get(f"{base}/auth/me", headers={"Authorization": f"Bearer {key}"})).status_code == 401
            refresh = await http.post(f"{base}/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
            assert refresh.status_code == 401
            # the watcher revokes the socket within one interval (0.5 s here): error, then close 1008
            message = json.loads(await asyncio.wait_for(socket.recv(), 10))
            assert message["type"] == "connection_error"
            assert message["data"]["error_code"] == "AUTHENTICATION_FAILED"
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(socket.recv(), 10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert not await database_sync_to_async(ScimUser.objects.filter(user=user, active=True).exists)()
    assert await database_sync_to_async(SSOConnection.objects.count)() == 1
