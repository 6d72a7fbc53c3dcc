"""One set of cache clients per ASGI process, not one per open socket.

Django keeps its cache connections in an asgiref ``Local``: per thread in sync code, per *context*
in async code, and ``sync_to_async`` copies what a call set in its context back to the caller. A
socket is one asyncio task (one context) for its whole life, so the first sync call of a socket
that touched the cache (authentication, the connection limits) would build a Redis client of its
own and keep it until the socket closed (bench B7, docs/benchmarks.md), and an HTTP request would
build and drop one.

``share_cache_clients()``, called once while the ASGI application is imported (before the server
starts accepting, so every connection's context is a copy of the one it ran in), opens the
configured caches in that root context. Every socket and request then finds them already there and
uses the same clients: redis-py clients are thread-safe and pooled, and asgiref's ``Local`` is
copy-on-write, so code that opens some other alias still gets a dict of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from django.conf import settings
from django.core.cache import caches


def share_cache_clients() -> None:
    for alias in settings.CACHES:
        caches[alias]


class _OfLoop(Protocol):
    loop: asyncio.AbstractEventLoop


_T = TypeVar("_T", bound=_OfLoop)


class PerLoop(Generic[_T]):
    """One instance of ``factory(loop)`` per process and event loop (the relay, the credential
    watcher): made on first use and made again when the running loop changes (tests run one loop
    per test). ``instance`` is the current one, or None before first use."""

    def __init__(self, factory: Callable[[asyncio.AbstractEventLoop], _T]) -> None:
        self._factory = factory
        self.instance: _T | None = None

    def current(self) -> _T:
        loop = asyncio.get_running_loop()
        if self.instance is None or self.instance.loop is not loop:
            self.instance = self._factory(loop)
        return self.instance
