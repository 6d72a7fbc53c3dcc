"""Platform API keys (auth/tokens): shown once, hashed, org-bound, role-limited, revocable."""

import hashlib

import pytest
from rest_framework.test import APIClient

from apps.accounts.models import ApiKey
from tests.helpers import assert_envelope

pytestmark = pytest.mark.django_db


def test_key_is_shown_once_stored_hashed_and_works(member, client_for):
    client = client_for(member)
    created = client.post("/api/v1/auth/tokens", {"name": "ci", "role": "developer"}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    raw = body["key"]
    assert raw.startswith("kai_") and body["role"] == "developer"
    stored = ApiKey.objects.get(pk=body["id"])
    assert stored.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in str(ApiKey.objects.filter(pk=body["id"]).values().get())
    listed = client.get("/api/v1/auth/tokens").json()
    assert listed["total"] == 1 and "key" not in listed["items"][0]
    assert "key" not in client.get(f"/api/v1/auth/tokens/{body['id']}").json()

    with_key = APIClient()
    with_key.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    me = with_key.get("/api/v1/auth/me").json()
    assert me["organization"]["id"] == str(member.organization.pk) and me["role"] == "developer"
    stored.refresh_from_db()
    assert stored.last_used_at is not None


def test_revoked_key_is_rejected_at_once(member, client_for):
    client = client_for(member)
    body = client.post("/api/v1/auth/tokens", {"name": "temp"}, format="json").json()
    with_key = APIClient()
    with_key.credentials(HTTP_AUTHORIZATION=f"Bearer {body['key']}")
    assert with_key.get("/api/v1/auth/me").status_code == 200
    assert client.delete(f"/api/v1/auth/tokens/{body['id']}").status_code == 204
    assert_envelope(with_key.get("/api/v1/auth/me"), 401)
    assert ApiKey.objects.get(pk=body["id"]).revoked_at is not None


def test_key_role_cannot_exceed_the_creator(make_member, client_for):
    developer = make_member("developer")
    response = client_for(developer).post("/api/v1/auth/tokens", {"name": "x", "role": "admin"}, format="json")
    assert assert_envelope(response, 400)["errors"][0]["field"] == "role"


def test_key_is_bound_to_its_organization(make_member, client_for):
    a = make_member()
    b = make_member(user=a.user)  # same user, second organization
    client = client_for(a, via="api_key", organization_header=b.organization.slug)
    assert_envelope(client.get("/api/v1/auth/me"), 403)


def test_expired_key_is_rejected(member, client_for):
    from datetime import timedelta

    from django.utils import timezone

    body = client_for(member).post("/api/v1/auth/tokens", {"name": "t"}, format="json").json()
    ApiKey.objects.filter(pk=body["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    with_key = APIClient()
    with_key.credentials(HTTP_AUTHORIZATION=f"Bearer {body['key']}")
    assert_envelope(with_key.get("/api/v1/auth/me"), 401)


def test_removing_a_member_revokes_their_keys(make_member, client_for):
    from apps.accounts.services import membership_remove

    owner = make_member()
    dev = make_member("developer", organization=owner.organization)
    raw = client_for(dev).post("/api/v1/auth/tokens", {"name": "d"}, format="json").json()["key"]
    membership_remove(membership=dev.membership, actor=owner.user)
    with_key = APIClient()
    with_key.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert_envelope(with_key.get("/api/v1/auth/me"), 401)


def test_members_see_their_own_keys_admins_see_all(make_member, client_for):
    owner = make_member()
    user = make_member("user", organization=owner.organization)
    client_for(owner).post("/api/v1/auth/tokens", {"name": "owner-key"}, format="json")
    client_for(user).post("/api/v1/auth/tokens", {"name": "user-key"}, format="json")
    assert {k["name"] for k in client_for(user).get("/api/v1/auth/tokens").json()["items"]} == {"user-key"}
    assert {k["name"] for k in client_for(owner).get("/api/v1/auth/tokens").json()["items"]} == {
        "owner-key",
        "user-key",
    }


def test_x_organization_picks_the_membership(make_member, client_for):
    first = make_member("owner")
    second = make_member("user", user=first.user)
    default = client_for(first).get("/api/v1/auth/me").json()
    assert default["organization"]["id"] == str(first.organization.pk) and default["role"] == "owner"
    by_slug = client_for(first, organization_header=second.organization.slug).get("/api/v1/auth/me").json()
    assert by_slug["organization"]["id"] == str(second.organization.pk) and by_slug["role"] == "user"
    by_id = client_for(first, organization_header=str(second.organization.pk)).get("/api/v1/auth/me").json()
    assert by_id["role"] == "user"


@pytest.mark.parametrize("header", ["no-such-org", "00000000-0000-0000-0000-000000000000"])
def test_unknown_organization_header_is_403(member, client_for, header):
    assert_envelope(client_for(member, organization_header=header).get("/api/v1/auth/me"), 403)


def test_foreign_organization_header_is_403(make_member, client_for):
    a, b = make_member(), make_member()
    assert_envelope(client_for(a, organization_header=b.organization.slug).get("/api/v1/auth/tokens"), 403)
