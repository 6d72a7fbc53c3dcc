"""ASGI entry point: HTTP through Django, WebSockets through Channels (kai_platform.realtime)."""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kai_platform.settings")
os.environ.setdefault("KAI_PROCESS", "web")  # fail fast on a database outage (settings: pool timeout)

from kai_platform.api.asgi_handler import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()  # Django's handler, the request in one hop to its thread

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from apps.agents import mcp_channel  # noqa: E402
from kai_platform.api.asgi_limits import BodyLimitMiddleware  # noqa: E402
from kai_platform.realtime.contexts import share_cache_clients  # noqa: E402
from kai_platform.realtime.routing import websocket_urlpatterns  # noqa: E402

share_cache_clients()  # in the root context every connection inherits: one Redis client, not one per socket


class PathPrefixDispatch:
    """HTTP requests under one of ``prefixes`` go to that ASGI app, the rest to ``default``."""

    def __init__(self, default, prefixes: dict):
        self.default, self.prefixes = default, prefixes

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        for prefix, app in self.prefixes.items():
            if path.startswith(prefix):
                return await app(scope, receive, send)
        return await self.default(scope, receive, send)



def _stream_multipart_bodies_under_daphne() -> None:
    """Twisted parses every multipart/form-data POST into ``request.args`` before daphne hands the
    body on — the whole body in memory several times over (a 50 MB upload cost ~600 MB of RSS,
    bench B12). Daphne never reads ``args``; Django parses the body itself, streaming. Twisted's
    documented ``parsePOSTFormSubmission=False`` turns its parsing off for daphne's requests."""
    try:
        from daphne.http_protocol import WebRequest
    except ImportError:  # another ASGI server
        return
    if getattr(WebRequest.__init__, "kai_no_form_parsing", False):
        return
    original = WebRequest.__init__

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("parsePOSTFormSubmission", False)
        original(self, *args, **kwargs)

    __init__.kai_no_form_parsing = True
    WebRequest.__init__ = __init__


_stream_multipart_bodies_under_daphne()


def _send_policy_close_codes_under_daphne() -> None:
    """Daphne closes a socket through autobahn's ``sendClose``, which accepts only 1000 and
    3000-4999 from an application and raises on 1008/1009/1011 (DESIGN §15's close codes, which
    RFC 6455 §7.4.1 lets a server send): the close then never left the server and a revoked
    socket stayed open. Such codes go straight to ``sendCloseFrame``, the frame writer
    ``sendClose`` itself ends in."""
    try:
        from daphne.ws_protocol import WebSocketProtocol
    except ImportError:  # another ASGI server
        return
    if getattr(WebSocketProtocol.serverClose, "kai_policy_codes", False):
        return
    original = WebSocketProtocol.serverClose

    def serverClose(self, code=None):
        if code is not None and 1000 < code < 3000 and self.state == self.STATE_OPEN:
            self.sendCloseFrame(code=code, reasonUtf8=None, isReply=False)
        else:
            original(self, code=code)

    serverClose.kai_policy_codes = True
    WebSocketProtocol.serverClose = serverClose


_send_policy_close_codes_under_daphne()

application = ProtocolTypeRouter({
    # MCP deployments (/mcp/deployments/{id}/) are served by the mcp package's transport, not Django
    "http": PathPrefixDispatch(BodyLimitMiddleware(django_asgi_app),
                               {mcp_channel.PATH_PREFIX: mcp_channel.application}),
    "websocket": URLRouter(websocket_urlpatterns),
})
