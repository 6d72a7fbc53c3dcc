"""The resolved-path cache (kai_platform/api/urlcache.py) answers exactly what Django would."""

from __future__ import annotations

import pytest
from django.urls import Resolver404, get_resolver

from kai_platform.api import urlcache


@pytest.fixture
def resolver():
    urlcache.install()
    resolver = get_resolver()
    assert "resolve" in resolver.__dict__, "the API middleware's cache is not on the root resolver"
    return resolver


def test_cached_matches_equal_django_and_are_private_copies(resolver):
    from django.urls.resolvers import URLResolver

    for path in ("/api/v1/auth/tokens", "/api/v1/agents/3f1c0000-0000-4000-8000-000000000000", "/health"):
        plain = URLResolver.resolve(resolver, path)
        first, second = resolver.resolve(path), resolver.resolve(path)
        for match in (first, second):
            assert (match.func, match.args, match.kwargs, match.url_name, match.route, match.namespaces) == (
                plain.func,
                plain.args,
                plain.kwargs,
                plain.url_name,
                plain.route,
                plain.namespaces,
            )
        first.kwargs["pk"] = "changed"
        assert resolver.resolve(path).kwargs == plain.kwargs  # a view changing its match changes nothing else


def test_unknown_paths_still_raise_and_are_not_kept(resolver, client):
    for _ in range(2):
        with pytest.raises(Resolver404):
            resolver.resolve("/api/v1/no-such-route")
    response = client.get("/api/v1/no-such-route")
    assert response.status_code == 404 and response.json()["code"]
