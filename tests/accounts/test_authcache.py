"""The per-process credential cache (kai_platform/tenancy/authcache.py) and the verified-JWT cache
(tenancy/authentication.py) never outlive a change: each test first warms the caches with a request,
changes something, and checks that the very next request sees it."""

from __future__ import annotations

import time
from datetime import timedelta

from rest_framework.test import APIClient

from apps.accounts.models import Membership, Organization
from kai_platform.api.errors import codes
from kai_platform.tenancy import authcache
from tests.factories import MembershipFactory, OrganizationFactory
from tests.helpers import assert_envelope


def _me(client) -> dict:
    response = client.get("/api/v1/auth/me")
    assert response.status_code == 200, response.content[:300]
    return response.json()


def _org_names(body: dict) -> list[str]:
    return [m["organization"]["name"] for m in body["memberships"]]


def test_me_is_served_from_the_cache_only_while_nothing_changed(member, client_for, django_assert_num_queries):
    client = client_for(member)
    first = _me(client)
    with django_assert_num_queries(0):  # user, membership, organization and memberships all cached
        again = _me(client)
    assert again == first


def test_me_sees_a_renamed_organization_on_the_next_request(member, client_for):
    other = OrganizationFactory(name="Before")
    MembershipFactory(user=member.user, organization=other, role="viewer")
    client = client_for(member)
    assert "Before" in _org_names(_me(client))
    _me(client)  # served from the cache
    other.name = "After"
    other.save()
    assert _org_names(_me(client)).count("After") == 1 and "Before" not in _org_names(_me(client))


def test_me_sees_a_queryset_update_that_bumps_the_organization(member, client_for):
    other = OrganizationFactory(name="Quiet")
    MembershipFactory(user=member.user, organization=other, role="viewer")
    client = client_for(member)
    _me(client), _me(client)
    Organization.objects.filter(pk=other.pk).update(name="Loud")  # bypasses signals...
    authcache.bump_org(other.pk)  # ...so the writer bumps, as the module asks
    assert "Loud" in _org_names(_me(client))


def test_me_sees_added_and_removed_memberships_on_the_next_request(member, client_for):
    client = client_for(member)
    assert len(_me(client)["memberships"]) == 1
    _me(client)
    extra = MembershipFactory(user=member.user, organization=OrganizationFactory(name="Joined"), role="viewer")
    body = _me(client)
    assert "Joined" in _org_names(body) and len(body["memberships"]) == 2
    extra.delete()
    assert len(_me(client)["memberships"]) == 1


def test_a_role_change_applies_on_the_next_request(make_member, client_for):
    member = make_member("owner")
    client = client_for(member)
    assert client.get("/api/v1/auth/tokens").status_code == 200
    assert _me(client)["role"] == "owner"
    Membership.objects.filter(pk=member.membership.pk).update(role="viewer")
    authcache.bump_user(member.user.pk)
    assert _me(client)["role"] == "viewer"
    member.membership.refresh_from_db()
    member.membership.role = "admin"
    member.membership.save()  # a save bumps by itself
    assert _me(client)["role"] == "admin"


def test_a_deactivated_organization_refuses_the_next_request(member, client_for):
    client = client_for(member)
    _me(client), _me(client)
    member.organization.is_active = False
    member.organization.save()
    response = client.get("/api/v1/agents")
    assert response.status_code in (401, 403), response.content[:300]


def test_a_removed_member_is_refused_on_the_next_request(make_member, client_for):
    member = make_member("developer")
    client = client_for(member)
    assert client.get("/api/v1/agents").status_code == 200
    member.membership.delete()
    assert client.get("/api/v1/agents").status_code == 403
    assert _me(client)["memberships"] == []


def test_a_verified_token_still_expires(member):
    from rest_framework_simplejwt.tokens import AccessToken

    token = AccessToken.for_user(member.user)
    token.set_exp(lifetime=timedelta(seconds=1))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert client.get("/api/v1/auth/me").status_code == 200  # verified, and remembered
    time.sleep(max(0.0, token["exp"] - time.time()) + 0.05)
    assert_envelope(client.get("/api/v1/auth/me"), 401, codes.TOKEN_EXPIRED)


def test_a_tampered_token_is_refused_even_after_the_real_one_was_seen(member, client_for):
    from apps.accounts.services import auth_issue_tokens

    raw = auth_issue_tokens(user=member.user)["access_token"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.get("/api/v1/auth/me").status_code == 200
    header, payload, signature = raw.split(".")
    flipped = signature[:5] + ("B" if signature[5] != "B" else "C") + signature[6:]
    forged = APIClient()
    forged.credentials(HTTP_AUTHORIZATION=f"Bearer {header}.{payload}.{flipped}")
    assert_envelope(forged.get("/api/v1/auth/me"), 401)


def test_the_probe_loads_its_script_when_redis_does_not_know_it(member, client_for, monkeypatch):
    monkeypatch.setattr(authcache, "PROBE_SHA", "0" * 40)  # EVALSHA answers NOSCRIPT: the probe sends EVAL
    client = client_for(member)
    assert _me(client)["role"] == "owner"
    response = client.get("/api/v1/auth/tokens")
    assert response.status_code == 200 and int(response["X-RateLimit-Remaining"]) < int(response["X-RateLimit-Limit"])
