from django.apps import AppConfig

from kai_platform.realtime.routing import add_http_prefix, add_websocket_route


class AgentsConfig(AppConfig):
    name = "apps.agents"
    label = "agents"
    verbose_name = "Agents, providers, secrets & tools"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        def consumers():
            # deferred: app registry — the route's consumer (views, models) loads when the ASGI router is built
            from apps.agents import consumers

            return consumers

        def mcp_channel():
            # deferred: app registry — the route's consumer (views, models) loads when the ASGI router is built
            from apps.agents import mcp_channel

            return mcp_channel

        add_websocket_route(
            r"^(?:api/(?:v1/)?)?ws/agents/(?P<agent_id>[^/]+)/?$", lambda: consumers().AgentSocketConsumer.as_asgi()
        )
        add_websocket_route(r"^(?:api/(?:v1/)?)?ws/mcp/?$", lambda: consumers().MCPConsumer.as_asgi())
        add_http_prefix("/mcp/deployments/", lambda: mcp_channel().application, on_first_request=True)
        # deferred: app registry — ready() runs once every app's models are loaded; apps.py loads before them
        from apps.agents import engine, runs, signals  # noqa: F401 (engine services, run kinds, signals)
