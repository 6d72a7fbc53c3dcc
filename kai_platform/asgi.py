"""ASGI entry point: HTTP through Django, WebSockets through Channels (kai_platform.realtime)."""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kai_platform.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from apps.agents import mcp_channel  # noqa: E402
from kai_platform.api.asgi_limits import BodyLimitMiddleware  # noqa: E402
from kai_platform.realtime.routing import websocket_urlpatterns  # noqa: E402


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


application = ProtocolTypeRouter({
    # MCP deployments (/mcp/deployments/{id}/) are served by the mcp package's transport, not Django
    "http": PathPrefixDispatch(BodyLimitMiddleware(django_asgi_app),
                               {mcp_channel.PATH_PREFIX: mcp_channel.application}),
    "websocket": URLRouter(websocket_urlpatterns),
})
