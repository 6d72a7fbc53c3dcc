"""Resolved paths, remembered per process.

Django resolves every request by walking the URL conf in order, and the API's routes are many
(docs/benchmarks.md has the cost). Resolution is a pure function of the path for a given URL conf,
so the root resolver keeps the last ``MAX_PATHS`` successful resolutions and hands out a copy of the
match (misses -- 404s -- are not kept and resolve as before).

Installed on the root resolver of ``ROOT_URLCONF`` by the API middleware when the handler loads;
a resolver made later (tests changing ``ROOT_URLCONF``) simply resolves uncached.
"""

from __future__ import annotations

from django.urls import ResolverMatch, get_resolver

MAX_PATHS = 4096


def install() -> None:
    resolver = get_resolver()
    if "resolve" in resolver.__dict__:
        return  # installed already
    resolve = resolver.resolve
    matches: dict[str, ResolverMatch] = {}

    def cached_resolve(path: object) -> ResolverMatch:
        path = str(path)
        match = matches.get(path)
        if match is None:
            match = resolve(path)  # Resolver404 propagates, uncached
            if len(matches) >= MAX_PATHS:
                matches.clear()
            matches[path] = match
        return _copy(match)

    resolver.resolve = cached_resolve  # type: ignore[method-assign]


def _copy(match: ResolverMatch) -> ResolverMatch:
    """A request's own match: views and middleware may change its dicts (ResolverMatch refuses
    copy.copy, which goes through pickling)."""
    copied = object.__new__(ResolverMatch)
    copied.__dict__.update(match.__dict__)
    copied.args = tuple(match.args)
    copied.kwargs = dict(match.kwargs)
    if match.captured_kwargs is not None:  # type: ignore[attr-defined]
        copied.captured_kwargs = dict(match.captured_kwargs)  # type: ignore[attr-defined]
    if match.extra_kwargs is not None:  # type: ignore[attr-defined]
        copied.extra_kwargs = dict(match.extra_kwargs)  # type: ignore[attr-defined]
    return copied
