from django.apps import AppConfig

from kai_platform.realtime.routing import add_websocket_route


class ConsoleConfig(AppConfig):
    name = "apps.console"
    label = "console"
    verbose_name = "Operator console"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        def consumer():
            # deferred: app registry — the route's consumer (views, models) loads when the ASGI router is built
            from apps.console.consumers import ConsoleConsumer

            return ConsoleConsumer.as_asgi()

        add_websocket_route(r"^api/(?:v1/)?ws/console/?$", consumer)
