"""The full role × route matrix, generated from the URL conf: for every API route whose view declares
``action_roles`` (DESIGN §5), each of the five roles calls each method; a role outside the declared
set gets the 403 role refusal, a role inside it never does. tests/test_permissions.py holds the seed
000 rows written out by hand (with success statuses); this covers every route as it lands."""

from __future__ import annotations

import pytest

from kai_platform.tenancy.roles import ALL_ROLES, Role
from tests.factories import make_tenant_object
from tests.test_tenant_isolation import _url, api_routes, tenant_model_of

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

ROLE_REFUSAL = "may not do this"


def _required(view, action) -> frozenset:
    rules = getattr(view, "action_roles", None) or {}
    return frozenset(rules.get(action, rules.get("*", ALL_ROLES)))


RESTRICTED = [r for r in api_routes() if getattr(r.view, "action_roles", None)]


def test_every_declared_role_rule_holds_for_every_role(make_member, client_for):
    owner = make_member("owner", plan="enterprise")
    clients = {
        role: client_for(owner if role == Role.OWNER else make_member(role, organization=owner.organization))
        for role in Role
    }
    sent, wrong = 0, []
    for route in RESTRICTED:
        model = tenant_model_of(route.view)
        obj = None
        if route.is_detail:
            if model is None:
                continue  # a detail route over no tenant model: its id cannot be made generically
            obj = make_tenant_object(model, owner.organization, owner.user)
        url = _url(route, obj)
        for method, action in route.actions:
            if method == "delete":
                continue  # deletes last, below (a deleted row would answer 404 to the roles after it)
            for role, client in clients.items():
                sent += 1
                wrong += _check(client, role, method, url, _required(route.view, action))
        for method, action in route.actions:
            if method == "delete":
                for role in sorted(Role, key=lambda r: r in _required(route.view, action)):
                    sent += 1
                    wrong += _check(clients[role], role, method, url, _required(route.view, action))
    print(f"role matrix: {len(RESTRICTED)} restricted routes × {len(Role)} roles, {sent} requests, {len(wrong)} wrong")
    assert not wrong, "\n".join(wrong[:40])
    assert sent >= 200, sent


def _check(client, role, method, url, allowed) -> list[str]:
    response = getattr(client, method)(url, {} if method != "get" else None, format="json")
    refused = response.status_code == 403 and ROLE_REFUSAL in response.json().get("detail", "")
    if role in allowed and refused:
        return [f"{role} refused {method.upper()} {url} (allowed: {sorted(allowed)})"]
    if role not in allowed and not refused:
        return [f"{role} got {response.status_code} on {method.upper()} {url}; only {sorted(allowed)} may"]
    return []
