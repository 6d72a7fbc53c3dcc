"""Runs of one agent and their server-sent events (stream-prompt)."""

from __future__ import annotations

import time
import uuid

import orjson
from django.db import connection
from django.http import StreamingHttpResponse
from django_redis import get_redis_connection
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.renderers import BaseRenderer
from rest_framework.response import Response

from apps.agents import calls
from apps.agents.models import Agent
from apps.crews import services
from apps.crews.serializers import (
    AgentCommandAcceptedSerializer,
    AgentCommandSerializer,
    AgentExecuteResponseSerializer,
    AgentExecuteSerializer,
    AgentTaskAcceptedSerializer,
    AgentTaskSerializer,
    StreamPromptSerializer,
)
from apps.runs import services as run_services
from apps.runs.models import Execution, ExecutionKind, ExecutionStatus
from apps.runs.streams import stream_key
from kai_platform.api.errors import Conflict
from kai_platform.api.renderers import KaiJSONRenderer, dumps
from kai_platform.api.serializers import validated
from kai_platform.tenancy.viewsets import TenantScopedViewSet

#: one server-sent event of the stream, as an SSE parser reads it (schemathesis validates each event against it)
SSE_EVENT = {
    "type": "object",
    "description": "One server-sent event: `event` start, stream_chunk, done or error; `data` a JSON object as text.",
    "properties": {
        "event": {"type": "string"},
        "data": {"type": "string", "contentMediaType": "application/json"},
        "id": {"type": "string"},
        "retry": {"type": "integer"},
    },
    "required": ["data"],
}


class EventStreamRenderer(BaseRenderer):
    """``text/event-stream``: the stream itself is a StreamingHttpResponse; errors render as one event."""

    media_type = "text/event-stream"
    format = "sse"
    charset = None

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None:
            return b""
        return b"event: error\ndata: " + dumps(data) + b"\n\n"


class AgentRunViewSet(TenantScopedViewSet):
    """Runs of one agent: task (seed 000), command (seed 000), execute (seed 002), stream-prompt (SSE)."""

    model = Agent
    serializer_class = AgentTaskSerializer
    http_method_names = ["post", "options"]
    renderer_classes = [KaiJSONRenderer, EventStreamRenderer]

    def get_renderers(self):
        """Only stream-prompt answers server-sent events; the other runs answer JSON."""
        if getattr(self, "action", None) != "stream_prompt":
            return [KaiJSONRenderer()]
        return super().get_renderers()

    @extend_schema(tags=["agents"], request=AgentTaskSerializer, responses={202: AgentTaskAcceptedSerializer})
    def task(self, request, pk=None):
        """Queue a task for the agent; its status is at ``tasks/{task_id}/status``."""
        agent = self.get_object()
        data = validated(AgentTaskSerializer, request)
        services.check_inputs(texts=(data["description"], data["expected_output"]), inputs=data["inputs"])
        execution = calls.agent_call_start(
            actor=request.user,
            kind=ExecutionKind.AGENT_TASK,
            agent=agent,
            run_name=f"{agent.name} - {data.get('name') or data['description'][:60]}"[:300],  # Execution.run_name
            definition={
                "name": data.get("name") or "task",
                "description": data["description"],
                "expected_output": data["expected_output"],
            },
            inputs=data["inputs"],
            params=data["params"],
            model=data.get("model") or "",
            priority=data["priority"],
        )
        return Response(
            {"task_id": execution.pk, "execution_id": execution.pk, "status": execution.status},
            status=status.HTTP_202_ACCEPTED,
        )

    @extend_schema(tags=["agents"], request=AgentCommandSerializer, responses={202: AgentCommandAcceptedSerializer})
    def command(self, request, pk=None):
        """Send the agent a command (seed 000 ``{command, params}``); it runs on a worker. Its output
        streams under ``stream_id`` and the result is the execution's."""
        agent = self.get_object()
        data = validated(AgentCommandSerializer, request)
        stream_id = uuid.uuid4().hex
        execution = calls.agent_call_start(
            actor=request.user,
            kind=ExecutionKind.AGENT_COMMAND,
            agent=agent,
            run_name=f"{agent.name} - {data['command']}"[:300],
            definition={"command": data["command"], "params": data["params"]},
            params=data["llm_params"],
            model=data.get("model") or "",
            priority=data["priority"],
            stream_id=stream_id,
        )
        return Response(
            {
                "execution_id": execution.pk,
                "stream_id": stream_id,
                "command": data["command"],
                "status": execution.status,
            },
            status=status.HTTP_202_ACCEPTED,
        )

    @extend_schema(
        tags=["agents"],
        request=AgentExecuteSerializer,
        responses={200: AgentExecuteResponseSerializer, 202: AgentExecuteResponseSerializer},
    )
    def execute(self, request, pk=None):
        """Seed 002: run an ``AgentCommand``; with ``wait_for_completion`` the ``AgentResponse`` comes back
        in ``data.result`` (else poll ``executions/{execution_id}``)."""
        agent = self.get_object()
        data = validated(AgentExecuteSerializer, request)
        command = data["command"]
        execution = calls.agent_call_start(
            actor=request.user,
            kind=ExecutionKind.AGENT_EXECUTE,
            agent=agent,
            run_name=f"{agent.name} - {command['action']}"[:300],
            definition={
                "action": command["action"],
                "parameters": command["parameters"],
                "context": command["context"],
                "user_id": command.get("user_id") or str(request.user.pk),
                "request_id": command.get("request_id") or getattr(request, "request_id", ""),
                "voice_input": command["voice_input"],
            },
            params=data["params"],
            priority=run_services.PRIORITY_NAMES[command["priority"]],
        )
        if data["wait_for_completion"]:
            execution = run_services.wait_for_terminal(execution_id=execution.pk, timeout=data["timeout_ms"] / 1000)
        body = {"execution_id": execution.pk, "status": execution.status}
        if execution.status == ExecutionStatus.COMPLETED and isinstance(execution.result, dict):
            body["result"] = execution.result
        elif execution.is_terminal:
            body["result"] = {
                "success": False,
                "data": None,
                "error": execution.error or execution.status.lower(),
                "metadata": {
                    "execution_time": execution.duration_ms or 0,
                    "resources_used": [],
                    "next_suggested_actions": [],
                    "workflow_triggered": [],
                },
            }
        success = execution.status not in (ExecutionStatus.FAILED, ExecutionStatus.CANCELLED)
        return Response(
            {"success": success, "data": body},
            status=status.HTTP_200_OK if execution.is_terminal else status.HTTP_202_ACCEPTED,
        )

    @extend_schema(
        tags=["agents"],
        request=StreamPromptSerializer,
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                response=SSE_EVENT, description="Server-sent events: start, stream_chunk…, done"
            ),
            202: AgentCommandAcceptedSerializer,
        },
    )
    def stream_prompt(self, request, pk=None):
        """Stream the agent's answer as server-sent events (``text/event-stream``): a ``start`` event,
        one ``stream_chunk`` per token (``{type, stream_id, chunk, done}``) and a final ``done: true``.
        The same chunks are readable by ``stream_id`` from the agent's socket."""
        agent = self.get_object()
        data = validated(StreamPromptSerializer, request)
        stream_id = data.get("stream_id") or uuid.uuid4().hex
        if data.get("stream_id"):
            _claim_stream_id(stream_id)
        execution = calls.agent_call_start(
            actor=request.user,
            kind=ExecutionKind.AGENT_PROMPT,
            agent=agent,
            run_name=f"{agent.name} - prompt",
            definition={"prompt": data["prompt"]},
            params=data["params"],
            model=data.get("model") or "",
            priority=8,
            stream_id=stream_id,
        )
        if not data["stream"]:
            return Response(
                {
                    "execution_id": execution.pk,
                    "stream_id": stream_id,
                    "command": "stream-prompt",
                    "status": execution.status,
                },
                status=status.HTTP_202_ACCEPTED,
            )
        response = StreamingHttpResponse(
            sse_events(execution_id=str(execution.pk), stream_id=stream_id), content_type="text/event-stream"
        )
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        response["X-Stream-ID"] = stream_id
        response["X-Execution-ID"] = str(execution.pk)
        return response


def _claim_stream_id(stream_id: str) -> None:
    """A client-chosen stream id names one run only (it keys the run's Redis stream)."""

    if Execution.objects.filter(stream_id=stream_id).exists():
        raise Conflict(
            f"stream_id {stream_id!r} is already used; omit it to get a fresh one.",
            errors=[{"field": "stream_id", "message": "already used"}],
        )
    get_redis_connection("default").delete(stream_key(stream_id))  # a leftover of a deleted run


SSE_KEEPALIVE_SECONDS = 15
SSE_BLOCK_MS = 1000
SSE_MAX_SECONDS = 900


def _sse(payload: dict, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(payload) + b"\n\n"


def sse_events(*, execution_id: str, stream_id: str):
    """Read the run's Redis stream from the start (nothing is missed however late the reader comes)."""

    connection.close()  # the stream may last minutes: no database connection held meanwhile
    yield _sse({"type": "start", "stream_id": stream_id, "execution_id": execution_id}, event="start")
    redis = get_redis_connection("default")
    key = stream_key(stream_id)
    last_id = "0-0"
    deadline = time.monotonic() + SSE_MAX_SECONDS
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        # block less than the Redis client's socket timeout (KAI_REDIS_TIMEOUT)
        entries = redis.xread({key: last_id}, count=200, block=SSE_BLOCK_MS)
        if not entries:
            if time.monotonic() - quiet_since >= SSE_KEEPALIVE_SECONDS:
                quiet_since = time.monotonic()
                yield b": keepalive\n\n"
            continue
        quiet_since = time.monotonic()
        for _key, items in entries:
            for entry_id, fields in items:
                last_id = entry_id
                fields = {
                    k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
                    for k, v in fields.items()
                }
                if fields.get("done"):
                    yield _sse(
                        {
                            "type": "stream_chunk",
                            "stream_id": stream_id,
                            "chunk": "",
                            "done": True,
                            "status": fields.get("status"),
                            "error": fields.get("error") or None,
                            "execution_id": execution_id,
                        }
                    )
                    return
                yield _sse(
                    {"type": "stream_chunk", "stream_id": stream_id, "chunk": fields.get("chunk", ""), "done": False}
                )
    yield _sse(
        {
            "type": "stream_chunk",
            "stream_id": stream_id,
            "chunk": "",
            "done": True,
            "status": "TIMEOUT",
            "execution_id": execution_id,
        }
    )


# --- generation --------------------------------------------------------------------------------
