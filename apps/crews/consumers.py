"""Run streams: ``/api/v1/execution-logs/{id}/stream`` (seed 001) and
``/api/v1/orchestrations/{id}/stream`` (seed 003).

A run stream sends the run's log lines from the first one (replayed from the table), then live
ones as the batched writer commits them, and its status changes; when the run ends it sends the
remaining lines, a ``complete`` message, and closes with 1000. Lines carry their per-run ``seq``;
a client that reconnects with ``?after=<seq>`` gets only what it has not seen.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
from channels.db import database_sync_to_async
from rest_framework.exceptions import PermissionDenied

from apps.crews import services
from apps.crews.models import Orchestration
from apps.crews.views import OrchestrationViewSet
from apps.runs.models import TERMINAL_STATUSES, Execution, ExecutionLog
from kai_platform.realtime.consumers import KaiSocketConsumer, now_iso
from kai_platform.realtime.groups import execution_group
from kai_platform.tenancy.roles import ALL_ROLES

POLL_SECONDS = 0.5


def channel_layer_of(consumer: KaiSocketConsumer) -> Any:
    """The socket's channel layer: these sockets have a channel of their own (``per_socket_channel``)."""
    if consumer.channel_layer is None:
        raise RuntimeError("the socket has no channel layer")
    return consumer.channel_layer


class ExecutionLogStreamConsumer(KaiSocketConsumer):
    """Seed 001's live logs: ``{type: "log", seq, level, message, data, timestamp}`` lines,
    ``{type: "status", status}`` changes, a final ``{type: "complete", status, result, error}``."""

    async def on_authenticated(self):
        execution_id = self.scope["url_route"]["kwargs"]["execution_id"]
        self.execution = await database_sync_to_async(_execution_of)(self.organization, execution_id)
        if self.execution is None:
            await self.refuse("NOT_FOUND", "No such execution in your organization.")
            return
        await self.follow(self.execution)

    async def follow(self, execution):
        self.execution = execution
        self.after = _as_int(self.query.get("after")) or 0
        self.group = execution_group(execution.pk)
        self._woken = asyncio.Event()
        await channel_layer_of(self).group_add(self.group, self.channel_name)
        await self.send_message("status", {"status": execution.status, "execution_id": str(execution.pk)})
        self._spawn(self._pump())

    async def on_disconnect(self, code):
        if getattr(self, "group", None):
            await channel_layer_of(self).group_discard(self.group, self.channel_name)

    async def handle_message(self, message: dict):
        if message["type"] == "ping":
            await self.send_message("pong", {"server_time": now_iso()})
        else:
            await self.send_error("INVALID_MESSAGE_FORMAT", f"Unknown message type '{message['type']}'.")

    async def on_event(self, event: dict):
        if event["type"].startswith("execution.") and event.get("execution_id") == str(self.execution.pk):
            await self.send_message(
                "status",
                {
                    "status": event["data"].get("status"),
                    "reason": event["data"].get("reason", ""),
                    "execution_id": event["execution_id"],
                },
                agent_id=event.get("agent_id"),
            )
        elif event["type"].startswith("approval.") and event.get("execution_id") == str(self.execution.pk):
            # {type: "approval_requested" | "approval_resolved", data: {approval_id, question, proposed, …}}
            await self.send_message(
                event["type"].replace(".", "_"),
                {**event["data"], "event_seq": event.get("seq")},
                agent_id=event.get("agent_id"),
            )
        self._woken.set()

    async def _pump(self):
        """Send new log lines until the run is over, then the rest and ``complete``."""
        while not self._closing:
            lines, status = await database_sync_to_async(_lines_after)(self.execution.pk, self.after)
            for line in lines:
                self.after = line["seq"]
                await self.send_message("log", line, agent_id=line["data"].get("agent_id"))
            if status["terminal"] and not lines:
                await self.send_message("complete", status)
                self._closing = True
                await self.close(code=1000, reason="NORMAL_CLOSURE: the run is over.")
                return
            if not lines:
                try:
                    await asyncio.wait_for(self._woken.wait(), POLL_SECONDS)
                except TimeoutError:
                    pass
                self._woken.clear()

    async def send_message(self, type_: str, data: dict, *, agent_id=None):
        payload = {"type": type_, "timestamp": now_iso(), "data": data}
        if agent_id:
            payload["agent_id"] = agent_id
        if "seq" in data:
            payload["seq"] = data["seq"]
        await self.send(text_data=orjson.dumps(payload, default=str).decode())


class OrchestrationStreamConsumer(ExecutionLogStreamConsumer):
    """Seed 003: stream an orchestration's run as ``{type, agent_id, data, timestamp}``. Follow a
    run with ``?execution_id=``, else send ``{"type": "execute", "input_data": {...}}`` to start one
    (the same as ``POST orchestrations/{id}/execute``, with the same role rules)."""

    async def on_authenticated(self):
        orchestration_id = self.scope["url_route"]["kwargs"]["orchestration_id"]
        self.orchestration = await database_sync_to_async(_orchestration_of)(self.organization, orchestration_id)
        if self.orchestration is None:
            await self.refuse("NOT_FOUND", "No such orchestration in your organization.")
            return
        self.execution = None
        execution_id = self.query.get("execution_id")
        if execution_id:
            execution = await database_sync_to_async(_execution_of)(self.organization, execution_id)
            if execution is None or execution.orchestration_id != self.orchestration.pk:
                await self.refuse("NOT_FOUND", "No such run of this orchestration.")
                return
            await self.follow(execution)
        else:
            await self.send_message(
                "ready", {"orchestration_id": str(self.orchestration.pk), "pattern": self.orchestration.pattern}
            )

    async def handle_message(self, message: dict):
        if message["type"] != "execute":
            return await super().handle_message(message)
        if self.execution is not None:
            return await self.send_error("ALREADY_RUNNING", "This socket already follows a run.")
        inputs = message.get("input_data", message.get("inputs", {}))
        if not isinstance(inputs, dict):
            return await self.send_error("INVALID_MESSAGE_FORMAT", "'input_data' must be an object.")
        try:
            execution = await database_sync_to_async(_start)(
                self.orchestration, self.user, self.authenticated_identity.role, inputs
            )
        except Exception as exc:
            return await self.send_error("EXECUTION_REFUSED", str(getattr(exc, "detail", exc)))
        await self.follow(execution)

    async def on_event(self, event: dict):
        if self.execution is not None:
            await super().on_event(event)


# --- database work ---------------------------------------------------------------------------------


def _as_int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _valid_uuid(value) -> bool:
    try:
        uuid.UUID(str(value))
        return True
    except ValueError:
        return False


def _execution_of(organization, execution_id):
    if not _valid_uuid(execution_id):
        return None
    return Execution.objects.for_org(organization).filter(pk=execution_id).first()


def _orchestration_of(organization, orchestration_id):
    if not _valid_uuid(orchestration_id):
        return None
    return Orchestration.objects.for_org(organization).filter(pk=orchestration_id).first()


def _start(orchestration, user, role, inputs):
    allowed = (getattr(OrchestrationViewSet, "action_roles", None) or {}).get("execute", ALL_ROLES)
    if role not in allowed:
        raise PermissionDenied(f"Role '{role}' may not execute orchestrations.")
    return services.orchestration_start(orchestration=orchestration, actor=user, inputs=inputs)


def _lines_after(execution_id, after: int, limit: int = 500):
    # the status first: a run's last log lines commit with (or before) its end, so once the status
    # read says it ended, the lines read next hold them all ("complete" never skips a line)
    execution = Execution.objects.only("status", "result", "error").get(pk=execution_id)
    status = {
        "status": execution.status,
        "terminal": execution.status in TERMINAL_STATUSES,
        "result": execution.result,
        "error": execution.error or None,
        "execution_id": str(execution_id),
    }
    lines = [
        {
            "seq": row.seq,
            "level": row.level,
            "message": row.message,
            "data": row.data,
            "created_at": row.created_at.isoformat().replace("+00:00", "Z"),
        }
        for row in ExecutionLog.objects.filter(execution_id=execution_id, seq__gt=after).order_by("seq")[:limit]
    ]
    return lines, status
