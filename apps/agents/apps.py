from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "apps.agents"
    label = "agents"
    verbose_name = "Agents, providers, secrets & tools"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from kai_platform.realtime.routing import add_http_prefix, add_websocket_route

        def consumers():
            from apps.agents import consumers

            return consumers

        def mcp_channel():
            from apps.agents import mcp_channel

            return mcp_channel

        add_websocket_route(r"^(?:api/(?:v1/)?)?ws/agents/(?P<agent_id>[^/]+)/?$",
                            lambda: consumers().AgentSocketConsumer.as_asgi())
        add_websocket_route(r"^(?:api/(?:v1/)?)?ws/mcp/?$", lambda: consumers().MCPConsumer.as_asgi())
        add_http_prefix("/mcp/deployments/", lambda: mcp_channel().application)
        from apps.agents import engine, runs, signals  # noqa: F401 (engine services, run kinds, signals)
