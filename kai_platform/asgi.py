"""ASGI entry point: HTTP through Django, WebSockets through Channels (kai_platform.realtime)."""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kai_platform.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from kai_platform.api.asgi_limits import BodyLimitMiddleware  # noqa: E402
from kai_platform.realtime.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter({
    "http": BodyLimitMiddleware(django_asgi_app),
    "websocket": URLRouter(websocket_urlpatterns),
})
