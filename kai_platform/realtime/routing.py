"""WebSocket routes (and ASGI apps served beside Django under a path prefix), registered by the
apps that own them in their ``AppConfig.ready``: the kernel imports no app. Like the REST API,
each socket is served under /api/v1/ and /api/.

Registration is lazy (a loader returns the consumer's ASGI app) so processes that serve no
sockets, Celery workers, never import consumers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from django.urls import URLPattern, re_path

from kai_platform.asgitypes import ASGIApp, Receive, Scope, Send

#: returns the ASGI app to serve (a consumer's ``as_asgi()``, an app's own)
Loader = Callable[[], ASGIApp]

_websocket_routes: list[tuple[str, Loader]] = []
_http_prefixes: dict[str, Loader] = {}
_websocket_prefixes: dict[str, Loader] = {}


def add_websocket_route(pattern: str, loader: Loader) -> None:
    """Serve sockets whose path matches ``pattern`` with ``loader()`` (an ASGI app, e.g. ``Consumer.as_asgi()``)."""
    if pattern not in (p for p, _ in _websocket_routes):
        _websocket_routes.append((pattern, loader))


def add_http_prefix(prefix: str, loader: Loader, *, on_first_request: bool = False) -> None:
    """Serve HTTP requests under ``prefix`` with ``loader()`` instead of Django. ``on_first_request``:
    call the loader when the first request arrives (in a thread, the loop keeps serving), for an app
    whose imports would slow every process start for a route most processes never serve."""
    _http_prefixes[prefix] = (lambda: LoadedOnFirstCall(loader)) if on_first_request else loader


class LoadedOnFirstCall:
    """An ASGI app that is ``loader()``'s app, loaded when it is first called."""

    def __init__(self, loader: Loader) -> None:
        self._loader, self._lock = loader, asyncio.Lock()
        self._app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        if self._app is None:
            async with self._lock:
                if self._app is None:
                    self._app = await asyncio.to_thread(self._loader)
        app = self._app
        assert app is not None
        return await app(scope, receive, send)


def websocket_urlpatterns() -> list[URLPattern]:
    # Channels' URLRouter takes ASGI apps in re_path; django-stubs types its argument as a view
    return [re_path(pattern, loader()) for pattern, loader in _websocket_routes]  # type: ignore[arg-type]


def add_websocket_prefix(prefix: str, loader: Loader) -> None:
    """Serve WebSocket connections under ``prefix`` with ``loader()`` instead of the Channels routes."""
    _websocket_prefixes[prefix] = loader


def http_prefix_apps() -> dict[str, ASGIApp]:
    return {prefix: loader() for prefix, loader in _http_prefixes.items()}


def websocket_prefix_apps() -> dict[str, ASGIApp]:
    return {prefix: loader() for prefix, loader in _websocket_prefixes.items()}
