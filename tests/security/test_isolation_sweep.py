"""Tenant isolation, counted: the generated sweep of ``tests/test_tenant_isolation.py`` (every
tenant route and method, discovered from the URL conf) driven by every outsider credential — a
second organization's JWT and API key, the same member forging ``X-Organization``, and anonymous
or garbage credentials — under both API prefixes. At least 500 requests, 0 leaks: an outsider
gets 404/401/403 only, never sees the first organization's row in a list, and changes nothing."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.factories import make_tenant_object
from tests.test_tenant_isolation import TENANT_ROUTES, _url, tenant_model_of

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

MIN_REQUESTS = 500
BODIES = {"post": {"organization": None, "name": "x"}, "put": {"organization": None}, "patch": {"organization": None}}
PREFIXES = ("/api/v1/", "/api/")


def _snapshot(obj):
    """Every concrete column of the row, to prove an outsider's request changed nothing."""
    row = type(obj).objects.filter(pk=obj.pk).values().first()
    return {k: v for k, v in (row or {}).items() if k != "updated_at"}


def test_outsiders_never_reach_another_organizations_objects(make_member, client_for, settings):
    a, b = make_member(), make_member(plan="enterprise")  # the sweep stays under b's rate limit
    settings.KAI_AUTH_ADDRESS_FAILURES_ALLOWED = 10_000  # and under the API-key guessing brake of its address
    outsiders = {
        "other-org jwt": (client_for(b), 404),
        "other-org api key": (client_for(b, via="api_key"), 404),
        # b's member naming a's organization: refused before any object is looked at
        "forged X-Organization": (client_for(b, organization_header=str(a.organization.pk)), 403),
        "anonymous": (APIClient(), 401),
    }
    garbage = APIClient()
    garbage.credentials(HTTP_AUTHORIZATION="Bearer kai_not-a-real-key")
    outsiders["garbage key"] = (garbage, 401)

    objects, snapshots = {}, {}
    for route in TENANT_ROUTES:
        model = tenant_model_of(route.view)
        if model not in objects:
            objects[model] = make_tenant_object(model, a.organization, a.user)
            snapshots[model] = _snapshot(objects[model])
    sent, leaks = 0, []
    for route in TENANT_ROUTES:
        obj = objects[tenant_model_of(route.view)]
        path = _url(route, obj if route.is_detail else None)
        for prefix in PREFIXES:
            url = prefix + path.removeprefix("/api/v1/")
            for method, action in route.actions:
                if prefix != PREFIXES[0] and method != "get":
                    continue  # the /api/ alias is the same view: its reads prove the alias is scoped too
                body = {k: (str(a.organization.pk) if v is None else v) for k, v in BODIES.get(method, {}).items()}
                for name, (client, expected) in outsiders.items():
                    if not route.is_detail and expected == 404:
                        # a collection route: lists must not show a's row, writes land in b's own org
                        if action != "list":
                            continue
                        expected = 200
                    response = getattr(client, method)(url, body if method in BODIES else None, format="json")
                    sent += 1
                    if response.status_code != expected:
                        leaks.append(f"{name}: {method.upper()} {url} → {response.status_code} (expected {expected})")
                    elif expected == 200:
                        ids = {str(item.get("id")) for item in response.json()["items"]}
                        if str(obj.pk) in ids:
                            leaks.append(f"{name}: {method.upper()} {url} lists a's row {obj.pk}")
    changed = [m.__name__ for m, obj in objects.items() if _snapshot(obj) != snapshots[m]]
    print(f"isolation sweep: {sent} requests over {len(TENANT_ROUTES)} routes, {len(leaks)} leaks")
    assert not leaks, "\n".join(leaks[:30])
    assert not changed, f"outsiders changed rows of {changed}"
    assert sent >= MIN_REQUESTS, sent
