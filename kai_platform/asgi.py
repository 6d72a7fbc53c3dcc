"""ASGI entry point: HTTP through Django, WebSockets through Channels (kai_platform.realtime),
socket.io (``/socket.io/``, docs/realtime.md) through python-socketio (``apps.events.sio``)."""

import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kai_platform.settings")
os.environ.setdefault("KAI_PROCESS", "web")  # fail fast on a database outage (settings: pool timeout)

from kai_platform import telemetry  # noqa: E402

telemetry.setup("kai-web")  # before Django loads its middleware: the instrumentation adds its own

from kai_platform.api.asgi_handler import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()  # Django's handler, the request in one hop to its thread

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from kai_platform.api.asgi_limits import BodyLimitMiddleware  # noqa: E402
from kai_platform.asgitypes import ASGIApp, Receive, Scope, Send  # noqa: E402
from kai_platform.clientaddr import TrustedProxyMiddleware  # noqa: E402
from kai_platform.realtime.contexts import share_cache_clients  # noqa: E402
from kai_platform.realtime.routing import http_prefix_apps, websocket_prefix_apps, websocket_urlpatterns  # noqa: E402

share_cache_clients()  # in the root context every connection inherits: one Redis client, not one per socket


class PathPrefixDispatch:
    """Connections whose path starts with one of ``prefixes`` go to that ASGI app, the rest to ``default``."""

    def __init__(self, default: ASGIApp, prefixes: dict[str, ASGIApp]) -> None:
        self.default, self.prefixes = default, prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        path = scope.get("path", "")
        for prefix, app in self.prefixes.items():
            if path.startswith(prefix):
                return await app(scope, receive, send)
        return await self.default(scope, receive, send)


def _stream_multipart_bodies_under_daphne() -> None:
    """Twisted parses every multipart/form-data POST into ``request.args`` before daphne hands the
    body on — the whole body in memory several times over (bench B12, docs/files.md). Daphne never reads ``args``; Django parses the body itself, streaming. Twisted's
    documented ``parsePOSTFormSubmission=False`` turns its parsing off for daphne's requests."""
    try:
        from daphne.http_protocol import WebRequest  # deferred: optional — only when daphne serves
    except ImportError:  # another ASGI server
        return
    if getattr(WebRequest.__init__, "kai_no_form_parsing", False):
        return
    original = WebRequest.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("parsePOSTFormSubmission", False)
        original(self, *args, **kwargs)

    __init__.kai_no_form_parsing = True  # type: ignore[attr-defined]
    WebRequest.__init__ = __init__


_stream_multipart_bodies_under_daphne()

# the client address and scheme, from forwarded headers of trusted proxies only (KAI_TRUSTED_PROXIES)
application = TrustedProxyMiddleware(
    ProtocolTypeRouter(
        {
            # apps serve some prefixes themselves (MCP deployments: the mcp package's transport; socket.io)
            "http": PathPrefixDispatch(BodyLimitMiddleware(django_asgi_app), http_prefix_apps()),
            "websocket": PathPrefixDispatch(URLRouter(websocket_urlpatterns()), websocket_prefix_apps()),
        }
    )
)
