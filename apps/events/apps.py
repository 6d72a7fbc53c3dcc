from django.apps import AppConfig

from kai_platform import ports
from kai_platform.realtime.routing import add_http_prefix, add_websocket_prefix, add_websocket_route


class EventsConfig(AppConfig):
    name = "apps.events"
    label = "events"
    verbose_name = "Events"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # deferred: app registry — ready() runs once every app's models are loaded; apps.py loads before them
        from apps.events.services import publish

        ports.provide("publish", publish)

        def consumer():
            # deferred: app registry — the route's consumer (views, models) loads when the ASGI router is built
            from apps.events.consumers import HubConsumer

            return HubConsumer.as_asgi()

        add_websocket_route(r"^api/(?:v1/)?ws/?$", consumer)

        def socketio_app():  # seed 002 clients: socket.io (long-polling and WebSocket) at /socket.io/
            # deferred: app registry — the route's consumer (views, models) loads when the ASGI router is built
            from apps.events import sio

            return sio.application

        add_http_prefix("/socket.io/", socketio_app)
        add_websocket_prefix("/socket.io/", socketio_app)
