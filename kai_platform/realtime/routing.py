"""WebSocket routes of every app, in one list (DESIGN §9). Like the REST API, each is served
under /api/v1/ and /api/."""
from django.urls import re_path

from apps.agents.consumers import AgentSocketConsumer, MCPConsumer
from apps.console.consumers import ConsoleConsumer
from apps.crews.consumers import ExecutionLogStreamConsumer, OrchestrationStreamConsumer
from apps.events.consumers import HubConsumer

websocket_urlpatterns: list = [
    re_path(r"^api/(?:v1/)?ws/?$", HubConsumer.as_asgi()),
    re_path(r"^api/(?:v1/)?ws/console/?$", ConsoleConsumer.as_asgi()),
    re_path(r"^(?:api/(?:v1/)?)?ws/agents/(?P<agent_id>[^/]+)/?$", AgentSocketConsumer.as_asgi()),
    re_path(r"^(?:api/(?:v1/)?)?ws/mcp/?$", MCPConsumer.as_asgi()),
    re_path(r"^api/(?:v1/)?execution-logs/(?P<execution_id>[^/]+)/stream/?$", ExecutionLogStreamConsumer.as_asgi()),
    re_path(r"^api/(?:v1/)?orchestrations/(?P<orchestration_id>[^/]+)/stream/?$",
            OrchestrationStreamConsumer.as_asgi()),
]
