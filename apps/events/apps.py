from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "apps.events"
    label = "events"
    verbose_name = "Events"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from apps.events.services import publish
        from kai_platform import ports
        from kai_platform.realtime.routing import add_http_prefix, add_websocket_prefix, add_websocket_route

        ports.provide("publish", publish)

        def consumer():
            from apps.events.consumers import HubConsumer

            return HubConsumer.as_asgi()

        add_websocket_route(r"^api/(?:v1/)?ws/?$", consumer)

        def socketio_app():  # seed 002 clients: socket.io (long-polling and WebSocket) at /socket.io/
            from apps.events import sio

            return sio.application

        add_http_prefix("/socket.io/", socketio_app)
        add_websocket_prefix("/socket.io/", socketio_app)
