from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import ParseError
from rest_framework.response import Response

from apps.agents import mcp
from kai_platform.api.schema import BODY_REQUIRED
from kai_platform.api.views import KaiAPIView

MCPMessageSerializer = inline_serializer(
    "MCPMessage",
    {
        "id": serializers.CharField(),
        "version": serializers.CharField(default="1.0"),
        "type": serializers.ChoiceField(choices=["request", "response", "notification", "error"]),
        "method": serializers.CharField(required=False),
        "params": serializers.DictField(required=False),
        "result": serializers.JSONField(required=False),
        "error": serializers.DictField(required=False),
        "timestamp": serializers.CharField(required=False),
        "source": serializers.DictField(required=False),
        "target": serializers.DictField(required=False, allow_null=True),
    },
)


#: the HTTP body: any JSON object. Its MCP shape (the fields of MCPMessage) is checked by the protocol, whose
#: answer to a malformed message is an MCP error message (-32600) with HTTP 200, as for any other MCP error
MCP_REQUEST = {
    BODY_REQUIRED: True,
    "type": "object",
    "additionalProperties": True,
    "description": "An MCP message (the fields of MCPMessage: id, type, method, params, …). A malformed message "
    "is answered in-band: an MCP error message (code -32600) with HTTP 200.",
}


@extend_schema(tags=["mcp"])
class MCPMessageView(KaiAPIView):
    """Seed 002 MCP messages over HTTP: one request in, its response (or MCP error) out, HTTP 200.
    Methods: agent.register, agent.send_message, workflow.execute, system.get_state, memory.store,
    memory.query. A body that is not JSON at all (or none) is a 400 error envelope."""

    @extend_schema(
        request={"application/json": MCP_REQUEST},
        responses={200: MCPMessageSerializer},
    )
    def post(self, request):
        if request.META.get("CONTENT_LENGTH", "") in ("", "0") and not request.META.get("HTTP_TRANSFER_ENCODING"):
            raise ParseError("An MCP message is a JSON body; this request has none.")
        if not isinstance(request.data, dict):
            raise ParseError("An MCP message is a JSON object.")
        return Response(mcp.handle(request.data, user=request.user, auth=request.auth))
