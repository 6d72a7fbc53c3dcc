from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "apps.events"
    label = "events"
    verbose_name = "Events"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from apps.events.services import publish
        from kai_platform import ports
        from kai_platform.realtime.routing import add_websocket_route

        ports.provide("publish", publish)

        def consumer():
            from apps.events.consumers import HubConsumer

            return HubConsumer.as_asgi()

        add_websocket_route(r"^api/(?:v1/)?ws/?$", consumer)
