from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "apps.console"
    label = "console"
    verbose_name = "Operator console"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from kai_platform.realtime.routing import add_websocket_route

        def consumer():
            from apps.console.consumers import ConsoleConsumer

            return ConsoleConsumer.as_asgi()

        add_websocket_route(r"^api/(?:v1/)?ws/console/?$", consumer)
