"""Tenant isolation, discovered from the URL conf (DESIGN §12).

Every API route whose view serves a tenant model (a model with an ``organization`` FK) must be a
``TenantScopedViewSet``; for each such route a second organization gets 404 on every detail
method and never sees the first organization's row in lists, and anonymous clients get 401.
New routes are covered without touching this file; a model the generic builder cannot make
registers a factory in ``tests.factories.TENANT_FACTORIES``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from kai_platform.tenancy.viewsets import TenantScopedViewSet
from tests.factories import PASSWORD, is_tenant_model, make_tenant_object

API_NAMESPACE = "v1"


@dataclass(frozen=True)
class Route:
    name: str
    view: type
    actions: tuple  # (method, action) pairs for viewsets; (method, method) for APIViews
    route: str
    is_detail: bool


def _walk(patterns, namespace=None, prefix=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, pattern.namespace or namespace, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield namespace, prefix + str(pattern.pattern), pattern


def api_routes() -> list[Route]:
    routes = []
    for namespace, route, pattern in _walk(get_resolver().url_patterns):
        if namespace != API_NAMESPACE:
            continue
        view = getattr(pattern.callback, "cls", None)
        if view is None:
            continue
        actions = getattr(pattern.callback, "actions", None)
        if actions:
            allowed = set(getattr(view, "http_method_names", ()))
            pairs = tuple(sorted((m, a) for m, a in actions.items() if m in allowed))
        else:
            pairs = tuple((m, m) for m in ("get", "post", "put", "patch", "delete") if hasattr(view, m))
        routes.append(Route(pattern.name, view, pairs, route, "<" in route or "(?P<" in route))
    return routes


def tenant_model_of(view):
    model = getattr(view, "model", None) or getattr(getattr(view, "queryset", None), "model", None)
    if model is None:
        serializer = getattr(view, "serializer_class", None)
        model = getattr(getattr(serializer, "Meta", None), "model", None)
    return model if model is not None and is_tenant_model(model) else None


TENANT_ROUTES = [r for r in api_routes() if tenant_model_of(r.view) is not None]
TENANT_VIEWSETS = sorted({r.view for r in TENANT_ROUTES}, key=lambda v: v.__name__)


def test_routes_were_discovered():
    names = {r.name for r in TENANT_ROUTES}
    assert {"api-key-list", "api-key-detail", "event-list", "event-detail"} <= names


@pytest.mark.parametrize("view", TENANT_VIEWSETS, ids=lambda v: v.__name__)
def test_every_view_over_tenant_data_is_tenant_scoped(view):
    assert issubclass(view, TenantScopedViewSet), (
        f"{view.__module__}.{view.__name__} serves {tenant_model_of(view).__name__} but is not a TenantScopedViewSet"
    )


def _url(route: Route, obj=None) -> str:
    """Fill the route's URL kwargs from the object: the lookup kwarg from its lookup field, any
    other ``<field>`` (or ``<x_name>`` → ``name``) from the attribute of that name."""
    import re

    from django.urls import reverse

    kwargs = {}
    lookup = getattr(route.view, "lookup_url_kwarg", None) or getattr(route.view, "lookup_field", "pk")
    for name in re.findall(r"\(\?P<(\w+)>", route.route) + re.findall(r"<(?:\w+:)?(\w+)>", route.route):
        if name == lookup:
            kwargs[name] = getattr(obj, getattr(route.view, "lookup_field", "pk"))
        elif hasattr(obj, name):
            kwargs[name] = getattr(obj, name)
        elif name.endswith("_name") and hasattr(obj, "name"):
            kwargs[name] = obj.name
        else:
            raise AssertionError(f"cannot fill <{name}> of {route.route} from a {type(obj).__name__}")
    return reverse(f"{API_NAMESPACE}:{route.name}", kwargs=kwargs)


BODIES = {"post": {}, "put": {}, "patch": {}}


@pytest.mark.parametrize("route", [r for r in TENANT_ROUTES if r.is_detail], ids=lambda r: r.name)
def test_another_organization_gets_404_on_every_detail_method(route, make_member, client_for):
    a, b = make_member(), make_member()
    obj = make_tenant_object(tenant_model_of(route.view), a.organization, a.user)
    url = _url(route, obj)
    owner_a, owner_b = client_for(a), client_for(b)
    methods = [m for m, _ in route.actions]
    if "get" in methods:
        seen = owner_a.get(url)
        if seen.status_code == 403 and seen.json()["type"] == "step_up_required":  # a stored secret: step up first
            assert (
                owner_a.post("/api/v1/auth/step-up/password", {"password": PASSWORD}, format="json").status_code == 200
            )
            seen = owner_a.get(url)
        assert seen.status_code == 200, f"sanity: the owner must see {url}"
    for method in methods:
        response = getattr(owner_b, method)(url, BODIES.get(method), format="json")
        assert response.status_code == 404, f"{method.upper()} {url} as another org → {response.status_code}"
        assert response.json()["code"]
        anonymous = getattr(_anonymous(), method)(url, BODIES.get(method), format="json")
        assert anonymous.status_code == 401, f"{method.upper()} {url} anonymous → {anonymous.status_code}"
    assert type(obj).objects.filter(pk=obj.pk).exists(), "another organization's request changed the row"


@pytest.mark.parametrize(
    "route", [r for r in TENANT_ROUTES if not r.is_detail and ("get", "list") in r.actions], ids=lambda r: r.name
)
def test_lists_never_show_another_organizations_rows(route, make_member, client_for):
    a, b = make_member(), make_member()
    model = tenant_model_of(route.view)
    obj = make_tenant_object(model, a.organization, a.user)
    mine = make_tenant_object(model, b.organization, b.user)
    url = _url(route)
    seen_by_a = client_for(a).get(url, {"limit": 100}).json()
    assert str(obj.pk) in {str(item.get("id")) for item in seen_by_a["items"]}, "sanity: the owner lists its row"
    seen_by_b = client_for(b).get(url, {"limit": 100}).json()
    ids = {str(item.get("id")) for item in seen_by_b["items"]}
    assert str(obj.pk) not in ids
    assert str(mine.pk) in ids
    assert _anonymous().get(url).status_code == 401


def _anonymous():
    from rest_framework.test import APIClient

    return APIClient()


def test_the_sweep_recognises_an_unscoped_viewset():
    from rest_framework import viewsets

    from apps.accounts.models import ApiKey

    class RogueViewSet(viewsets.ModelViewSet):
        queryset = ApiKey.objects.all()

    assert tenant_model_of(RogueViewSet) is ApiKey
    assert not issubclass(RogueViewSet, TenantScopedViewSet)


def test_overriding_get_queryset_is_refused():
    from apps.accounts.models import ApiKey

    with pytest.raises(TypeError, match="scope_queryset"):

        class Sneaky(TenantScopedViewSet):
            model = ApiKey

            def get_queryset(self):
                return ApiKey.objects.all()
