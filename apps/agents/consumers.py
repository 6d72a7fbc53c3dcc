"""The agent socket ``/ws/agents/{agent_id}`` — its protocol: docs/sockets.md.

Server → client (flat messages, as the seed prints them): ``status_update {status}``,
``log {message, level}``, ``stream_chunk {stream_id, chunk, done}`` and, for a command,
``command_result {command, stream_id, result}``. Client → server: ``command {command, params}``
(run like ``POST agents/{id}/command``, its output streamed back), ``upload {filename, base64}``
(stored through the files app) and ``heartbeat`` (the agent's liveness and the services registry).

Any run of the agent that streams (stream-prompt, commands from REST or another socket) is
relayed from the same Redis stream the SSE response reads, so both see the same chunks.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import uuid
from typing import Any, cast

import orjson
import redis.asyncio as aioredis
from channels.db import database_sync_to_async
from django.conf import settings
from rest_framework.exceptions import ValidationError

from apps.agents import mcp, services
from apps.agents.calls import agent_call_start
from apps.agents.models import Agent, Service
from apps.files.services import file_store_bytes
from apps.runs.models import TERMINAL_STATUSES, Execution, ExecutionKind
from apps.runs.services import execution_cancel
from apps.runs.streams import stream_key
from kai_platform.realtime.consumers import KaiSocketConsumer, now_iso
from kai_platform.realtime.groups import agent_group
from kai_platform.tenancy.roles import HUMAN_ROLES

logger = logging.getLogger("kai.realtime")

LOG_LEVELS = {"debug": "info", "info": "info", "warning": "warn", "error": "error", "critical": "error"}

#: what XREAD answers over RESP2 (the clients' protocol): per stream, its key and its entries (id, fields)
StreamEntries = list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]


def channel_layer_of(consumer: KaiSocketConsumer) -> Any:
    """The socket's channel layer: these sockets have a channel of their own (``per_socket_channel``)."""
    if consumer.channel_layer is None:
        raise RuntimeError("the socket has no channel layer")
    return consumer.channel_layer


class AgentSocketConsumer(KaiSocketConsumer):
    _redis: aioredis.Redis | None = None  # the stream reader's connection, made on first use

    async def on_authenticated(self):
        self.agent = await database_sync_to_async(_agent_of)(
            self.organization, self.scope["url_route"]["kwargs"]["agent_id"]
        )
        if self.agent is None:
            await self.refuse("AGENT_NOT_FOUND", "No such agent in your organization.")
            return
        self.group = agent_group(self.agent.pk)
        self.relaying: set[str] = set()
        self._redis = None
        await channel_layer_of(self).group_add(self.group, self.channel_name)
        await self.send_flat("status_update", status=self.agent.status, agent_id=str(self.agent.pk))

    async def on_disconnect(self, code):
        if getattr(self, "group", None):
            await channel_layer_of(self).group_discard(self.group, self.channel_name)
        if self._redis is not None:
            await self._redis.aclose()

    async def warn_disconnect(self, reason: str, seconds: float, **kwargs) -> None:
        await self.send_flat("disconnect_warning", reason=reason, seconds_left=round(seconds, 1))

    async def send_flat(self, type_: str, **fields):
        await self.send(text_data=orjson.dumps({"type": type_, **fields, "timestamp": now_iso()}, default=str).decode())

    # --- events of this agent -------------------------------------------------------------
    async def on_event(self, event: dict):
        kind, data = event["type"], event.get("data") or {}
        if kind == "agent.status_changed":
            await self.send_flat("status_update", status=data.get("new_status"), seq=event["seq"])
        elif kind == "agent.restarted":  # a restart shows even when the status stays what it was
            await self.send_flat("status_update", status=data.get("status"), restarted=True, seq=event["seq"])
        elif kind in {"agent.log", "agent.message"}:
            await self.send_flat(
                "log",
                message=str(data.get("message", data)),
                level=LOG_LEVELS.get(event.get("severity") or "", "info"),
                seq=event["seq"],
            )
        elif kind.startswith("execution."):
            status = data.get("status", kind.split(".", 1)[1])
            await self.send_flat(
                "log",
                message=f"Execution {event.get('execution_id')} {status.lower()}",
                level="error" if status.upper() == "FAILED" else "info",
                seq=event["seq"],
                execution_id=event.get("execution_id"),
            )
            if kind == "execution.running" and event.get("execution_id"):
                stream_id = await database_sync_to_async(_stream_of)(event["execution_id"])
                if stream_id:
                    self._relay(stream_id)

    # --- client messages --------------------------------------------------------------------
    async def handle_message(self, message: dict):
        kind = message["type"]
        if kind == "heartbeat":
            await database_sync_to_async(_heartbeat)(self.agent)
            await self.send_flat("heartbeat_ack", agent_id=str(self.agent.pk))
        elif kind == "command":
            await self._command(message)
        elif kind == "upload":
            await self._upload(message)
        else:
            await self.send_error("INVALID_MESSAGE_FORMAT", f"Unknown message type '{kind}'.")

    async def _command(self, message: dict):
        command = message.get("command")
        params = message.get("params") if isinstance(message.get("params"), dict) else {}
        if not isinstance(command, str) or not command.strip():
            await self.send_error("INVALID_MESSAGE_FORMAT", "'command' must be a non-empty string.")
            return
        role = self.authenticated_identity.role
        if role not in HUMAN_ROLES and role != "agent":
            await self.send_error("PERMISSION_DENIED", "Your role may not send commands.")
            return
        try:
            execution_id, stream_id = await database_sync_to_async(_start_command)(
                self.organization, self.user, self.agent, command, params
            )
        except Exception as exc:  # a refused run (disabled agent, quota…) is answered, not crashed on
            detail = getattr(exc, "detail", None) or str(exc)
            await self.send_error("COMMAND_REFUSED", str(detail))
            return
        self._relay(stream_id, command=command, execution_id=execution_id)

    async def _upload(self, message: dict):
        filename, payload = message.get("filename"), message.get("base64")
        if not isinstance(filename, str) or not isinstance(payload, str):
            await self.send_error("INVALID_MESSAGE_FORMAT", "'filename' and 'base64' are required strings.")
            return
        try:
            content = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            await self.send_error("INVALID_MESSAGE_FORMAT", "'base64' is not valid base64.")
            return
        try:
            stored = await database_sync_to_async(_store_upload)(
                self.organization, self.user, self.agent, filename, content
            )
        except Exception as exc:
            await self.send_error("UPLOAD_REFUSED", str(getattr(exc, "detail", exc)))
            return
        await self.send_flat(
            "upload_result",
            file_id=str(stored.pk),
            filename=stored.name,
            size=stored.size,
            content_type=stored.content_type,
            sha256=stored.sha256,
        )

    # --- streams ------------------------------------------------------------------------------
    def _relay(self, stream_id: str, *, command: str | None = None, execution_id=None):
        if stream_id in self.relaying:
            return
        self.relaying.add(stream_id)
        self._spawn(self._relay_stream(stream_id, command, execution_id))

    async def _relay_stream(self, stream_id: str, command, execution_id):
        """Forward a run's Redis stream as ``stream_chunk`` messages, from its first entry."""

        if self._redis is None:
            self._redis = aioredis.Redis.from_url(settings.REDIS_URL, **settings.ASYNC_REDIS_OPTIONS)
        key, status = stream_key(stream_id), None
        last_id: str | bytes = "0-0"
        deadline = asyncio.get_running_loop().time() + 3600
        try:
            while status is None and asyncio.get_running_loop().time() < deadline:
                # redis-py types the answer of either protocol; this client's is RESP2's
                entries = cast(StreamEntries, await self._redis.xread({key: last_id}, count=200, block=5000))
                for _key, items in entries or []:
                    for entry_id, raw in items:
                        last_id = entry_id
                        fields = {k.decode(): v.decode() for k, v in raw.items()}
                        if fields.get("done"):
                            status = fields.get("status") or "COMPLETED"
                            await self.send_flat(
                                "stream_chunk",
                                stream_id=stream_id,
                                chunk="",
                                done=True,
                                status=status,
                                error=fields.get("error") or None,
                            )
                            break
                        if "chunk" in fields:
                            await self.send_flat("stream_chunk", stream_id=stream_id, chunk=fields["chunk"], done=False)
            if command is not None:
                result = await database_sync_to_async(_result_of)(execution_id)
                await self.send_flat(
                    "command_result",
                    command=command,
                    stream_id=stream_id,
                    execution_id=str(execution_id),
                    status=result["status"],
                    result=result["result"],
                    error=result["error"],
                )
        finally:
            self.relaying.discard(stream_id)


# --- database work (run in threads) ------------------------------------------------------------


def _agent_of(organization, agent_id):
    try:
        uuid.UUID(str(agent_id))
    except ValueError:
        return None
    return Agent.objects.for_org(organization).filter(pk=agent_id).first()


def _stream_of(execution_id) -> str:
    return Execution.objects.filter(pk=execution_id).values_list("stream_id", flat=True).first() or ""


def _heartbeat(agent) -> None:
    services.agent_heartbeat(agent=agent)
    for service in Service.objects.for_org(agent.organization_id).filter(ref_id=agent.pk):
        services.service_heartbeat(service=service)


def _start_command(organization, user, agent, command: str, params: dict):
    stream_id = uuid.uuid4().hex
    execution = agent_call_start(
        actor=user,
        kind=ExecutionKind.AGENT_COMMAND,
        agent=agent,
        run_name=f"{agent.name} - {command}"[:300],
        definition={"command": command, "params": params},
        stream_id=stream_id,
        priority=8,
    )
    return execution.pk, stream_id


def _result_of(execution_id) -> dict:
    execution = Execution.objects.get(pk=execution_id)
    return {"status": execution.status, "result": execution.result, "error": execution.error or None}


def _store_upload(organization, user, agent, filename: str, content: bytes):
    return file_store_bytes(organization=organization, user=user, content=content, name=filename, agent_id=agent.pk)


# --- hub commands (``command``, docs/sockets.md): the same services and role rules as the REST routes ------

from kai_platform.realtime.commands import CommandError, register_command  # noqa: E402


def _agent_for_command(auth, agent_id):
    agent = _agent_of(auth.organization, agent_id) if agent_id else None
    if agent is None:
        raise CommandError("AGENT_NOT_FOUND", f"Agent with ID '{agent_id}' not found")
    return agent


def _status_body(agent) -> dict:
    return {
        "agent_id": str(agent.pk),
        "status": agent.status,
        "is_active": agent.is_active,
        "version": agent.version,
        "last_heartbeat": agent.last_heartbeat,
        "last_execution": agent.last_execution,
        "execution_count": agent.execution_count,
    }


def _update(agent, user, data):
    try:
        return services.agent_update(agent=agent, actor=user, data=data)
    except ValidationError as exc:
        raise CommandError("INVALID_PARAMETERS", str(exc.detail))


@register_command("start", roles=HUMAN_ROLES)
def _start(*, user, auth, agent_id, parameters):
    agent = _agent_for_command(auth, agent_id)
    return _status_body(_update(agent, user, {"status": "active", "is_active": True}))


@register_command("stop", roles=HUMAN_ROLES)
def _stop(*, user, auth, agent_id, parameters):
    """Stop processing: the agent goes idle and, unless ``graceful``, its running runs are cancelled."""
    agent = _agent_for_command(auth, agent_id)
    cancelled = []
    if not parameters.get("graceful", False):
        for execution in (
            Execution.objects.for_org(auth.organization).filter(agent=agent).exclude(status__in=TERMINAL_STATUSES)
        ):
            execution_cancel(execution=execution, actor=user, reason="agent stopped")
            cancelled.append(str(execution.pk))
    body = _status_body(_update(agent, user, {"status": "idle"}))
    return {**body, "cancelled_executions": cancelled}


@register_command("restart", roles=HUMAN_ROLES)
def _restart(*, user, auth, agent_id, parameters):
    agent = _agent_for_command(auth, agent_id)
    return _status_body(services.agent_restart(agent=agent, actor=user))


@register_command("update_config", roles=HUMAN_ROLES)
def _update_config(*, user, auth, agent_id, parameters):
    agent = _agent_for_command(auth, agent_id)
    changes = parameters.get("config", parameters)
    if not isinstance(changes, dict) or not changes:
        raise CommandError("INVALID_PARAMETERS", 'Pass the fields to change, e.g. {"config": {"goal": "…"}}.')
    return _status_body(_update(agent, user, changes))


@register_command("get_status")
def _get_status(*, user, auth, agent_id, parameters):
    return _status_body(_agent_for_command(auth, agent_id))


# --- /ws/mcp: MCP messages over a socket (docs/sockets.md) ----------------------------------------


class MCPConsumer(KaiSocketConsumer):
    """Each request gets its response (same ``id``). A socket whose requests name a source agent
    (``source.agent_number``) also receives the messages sent to that agent, as notifications."""

    async def on_authenticated(self):
        self.joined: set[str] = set()
        await self.send(
            text_data=_mcp_json(
                {
                    "id": self.client_id,
                    "version": "1.0",
                    "type": "notification",
                    "method": "connection.ready",
                    "params": {"session_id": self.authenticated_identity.session_id},
                    "timestamp": now_iso(),
                }
            )
        )

    async def warn_disconnect(self, reason: str, seconds: float, **kwargs) -> None:
        await self.send(
            text_data=_mcp_json(
                {
                    "id": f"{self.client_id}-closing",
                    "version": "1.0",
                    "type": "notification",
                    "method": "connection.closing",
                    "params": {"reason": reason, "seconds_left": round(seconds, 1)},
                    "timestamp": now_iso(),
                }
            )
        )

    async def on_disconnect(self, code):
        for group in getattr(self, "joined", ()):
            await channel_layer_of(self).group_discard(group, self.channel_name)

    async def handle_message(self, message: dict):
        response = await database_sync_to_async(mcp.handle)(message, user=self.user, auth=self.auth)
        await self.send(text_data=_mcp_json(response))
        source = message.get("source")
        number = source.get("agent_number") if isinstance(source, dict) else None
        if isinstance(number, int) and number > 0:
            agent_id = await database_sync_to_async(_agent_id_by_number)(self.organization, number)
            if agent_id:
                group = agent_group(agent_id)
                if group not in self.joined:
                    self.joined.add(group)
                    await channel_layer_of(self).group_add(group, self.channel_name)

    async def on_event(self, event: dict):
        if event["type"] not in {"agent.message", "agent.broadcast"}:
            return
        await self.send(
            text_data=_mcp_json(
                {
                    "id": f"evt-{event['seq']}",
                    "version": "1.0",
                    "type": "notification",
                    "method": "agent.send_message" if event["type"] == "agent.message" else "agent.broadcast",
                    "params": event.get("data") or {},
                    "timestamp": event["timestamp"],
                    "seq": event["seq"],
                    "source": {"agent_number": (event.get("data") or {}).get("from_agent")},
                    "target": {"agent_id": event.get("agent_id")},
                }
            )
        )


def _mcp_json(message: dict) -> str:
    return orjson.dumps(message, default=str).decode()


def _agent_id_by_number(organization, number: int):
    return Agent.objects.for_org(organization).filter(agent_number=number).values_list("pk", flat=True).first()
