"""The hub socket ``/api/v1/ws`` — seed 004's protocol, fed by the event log.

Delivery is exactly-once per connection and loses nothing: live events come over the channel
layer; a reconnecting client's ``last_event_id`` (query or subscribe data) is replayed from the
``Event`` table first; and while subscribed, the consumer reads the table past the highest seq it
has confirmed there every ``KAI_WS_RECONCILE_SECONDS`` (sooner after live traffic), so an event
the channel layer dropped still arrives. Seqs already sent are skipped.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from types import MappingProxyType

from channels.db import database_sync_to_async
from django.conf import settings

from apps.events import catalog, client_events, seed_payloads
from apps.events.models import Event
from apps.events.services import serialize_event
from kai_platform.realtime import limits, relay
from kai_platform.realtime.commands import CommandError, command_names, get_command
from kai_platform.realtime.consumers import CLOSE_GOING_AWAY, KaiSocketConsumer, now_iso
from kai_platform.realtime.groups import org_group

logger = logging.getLogger(__name__)

REPLAY_BATCH = 500
SEEN_WINDOW = 20_000
DEFAULT_CONFIG = MappingProxyType({"metrics_interval": 5000, "buffer_size": 100, "compression": False})


class SeenSeqs:
    """The seqs sent on this connection (bounded: the oldest are forgotten first)."""

    __slots__ = ("_set", "_order")

    def __init__(self):
        self._set: set[int] = set()
        self._order: collections.deque = collections.deque()

    def add(self, seq: int) -> bool:
        if seq in self._set:
            return False
        self._set.add(seq)
        self._order.append(seq)
        if len(self._order) > SEEN_WINDOW:
            self._set.discard(self._order.popleft())
        return True


class HubConsumer(KaiSocketConsumer):
    per_socket_channel = False  # organization events come through the process's relay (realtime/relay.py)
    keeps_identity_rows = False  # ids are enough; a command loads the rows (identity_rows)

    # Subscription state starts as these shared, never-mutated class defaults; a socket gets its
    # own sets/config/seen window/reconcile signal when it first subscribes, configures or receives
    # (an idle socket carries none of them: bench B7).
    events: AbstractSet[str] = frozenset()
    agents: AbstractSet[str] = frozenset()
    severity: AbstractSet[str] = frozenset()
    components: AbstractSet[str] = frozenset()
    config: Mapping[str, int] = DEFAULT_CONFIG
    seen: SeenSeqs | None = None
    watermark: int | None = None  # highest seq confirmed from the table
    _last_metrics_at = 0.0
    _reconcile_soon: asyncio.Event | None = None
    _resume_from: int | None = None

    async def on_authenticated(self):
        resume = _as_int(self.query.get("last_event_id"))
        if resume is not None:
            self._resume_from = resume
        await self.join_groups()
        await self.send_envelope(
            "connection_established",
            {
                "client_id": self.client_id,
                "session_id": self.authenticated_identity.session_id,
                "server_version": self.server_version,
                "pooled": True,
                "organization_id": str(self.authenticated_identity.organization_id)
                if self.authenticated_identity.organization_id
                else None,
                "commands": command_names(),
            },
        )

    async def join_groups(self):
        self.group = org_group(self.authenticated_identity.organization_id)
        await relay.join(self.group, self)

    async def on_disconnect(self, code):
        if getattr(self, "group", None):
            await relay.leave(self.group, self)

    # --- client messages ------------------------------------------------------------------
    async def handle_message(self, message: dict):
        handler = {
            "subscribe": self.on_subscribe,
            "unsubscribe": self.on_unsubscribe,
            "command": self.on_command,
            "ping": self.on_ping,
            "configure": self.on_configure,
            "disconnect": self.on_client_disconnect,
            "agent:subscribe": self.on_agent_subscribe,
            "agent:unsubscribe": self.on_agent_unsubscribe,
            "connection_pool_info": self.on_pool_info,
            "get_pool_info": self.on_pool_info,
            **dict.fromkeys(client_events.NAMES, self.on_client_event),
        }.get(message["type"])
        if handler is None:
            await self.send_error("INVALID_MESSAGE_FORMAT", f"Unknown message type '{message['type']}'.")
            return
        data = message.get("data") if isinstance(message.get("data"), dict) else {}
        await handler(data, message)

    async def on_subscribe(self, data, message):
        requested = data.get("events") or []
        if not isinstance(requested, list):
            return await self._subscription_error("INVALID_MESSAGE_FORMAT", "'events' must be a list of event types.")
        names, unknown = set(), []
        for name in requested:
            canonical = catalog.normalize_subscription(name)
            (names.add(canonical) if canonical else unknown.append(name))
        if unknown:
            return await self._subscription_error(
                "UNSUPPORTED_EVENT_TYPE",
                f"Event type '{unknown[0]}' is not supported",
                supported_events=sorted(catalog.SUPPORTED_EVENTS),
            )
        if len(self.events | names) > settings.KAI_WS_MAX_EVENT_TYPES:
            return await self._subscription_error(
                "SUBSCRIPTION_LIMIT_EXCEEDED", f"At most {settings.KAI_WS_MAX_EVENT_TYPES} event types per connection."
            )
        agents = data.get("agents") or []
        filters = data.get("filters") or {}
        if not isinstance(agents, list) or not isinstance(filters, dict):
            return await self._subscription_error("INVALID_MESSAGE_FORMAT", "'agents' is a list, 'filters' an object.")
        if self._reconcile_soon is None:
            self._reconcile_soon = asyncio.Event()
        reconcile_soon = self._reconcile_soon
        self.events = {*self.events, *names}
        self.agents = {*self.agents, *(str(a) for a in agents)}
        if "severity" in filters:
            self.severity = {str(s) for s in filters.get("severity") or []}
        if "components" in filters:
            self.components = {str(c) for c in filters.get("components") or []}
        resume = _as_int(data.get("last_event_id"))
        if resume is None:
            resume, self._resume_from = self._resume_from, None
        if resume is None and self.watermark is None:
            # read before the confirmation: an event published once the client holds it is after
            # the watermark, so the reconcile delivers it even when the channel layer drops it
            self.watermark = await database_sync_to_async(self.table_latest_seq)()
        await self.send_envelope(
            "subscription_confirmed",
            {
                "events": sorted(self.events),
                "agents": sorted(self.agents),
                "filters": {"severity": sorted(self.severity), "components": sorted(self.components)},
                "status": "active",
            },
        )
        if "connection_pool_info" in names:  # subscribing to it: the current figures at once
            await self.on_pool_info(data, message)
        if resume is not None:
            await self._replay(after=resume)
        if not getattr(self, "_reconciler_started", False):
            self._reconciler_started = True
            self._spawn(self._reconcile_loop(reconcile_soon))

    async def on_unsubscribe(self, data, message):
        self.events = set(self.events) - {
            catalog.normalize_subscription(name) or name for name in data.get("events") or []
        }
        self.agents = set(self.agents) - {str(agent) for agent in data.get("agents") or []}
        await self.send_envelope(
            "subscription_confirmed",
            {
                "events": sorted(self.events),
                "agents": sorted(self.agents),
                "status": "active" if self.events else "inactive",
            },
        )

    async def on_pool_info(self, data, message):
        """Seed 004's ``connection_pool_info``: the user's sockets across every process against the cap."""
        active = await limits.connections_of(self.authenticated_identity.user_id)
        cap = settings.KAI_WS_MAX_PER_USER
        await self.send_envelope(
            "connection_pool_info",
            {
                "pool_id": f"pool_{str(self.authenticated_identity.user_id).replace('-', '')[:12]}",
                "active_connections": active,
                "max_connections": cap,
                "pool_utilization": round(active / cap, 2) if cap else 0.0,
                "connections_per_minute": settings.KAI_WS_CONNECTS_PER_MINUTE,
                "client_id": self.client_id,
            },
        )

    async def on_agent_subscribe(self, data, message):
        agent_id = message.get("agent_id") or data.get("agent_id")
        await self.on_subscribe({"events": [], "agents": [agent_id] if agent_id else []}, message)

    async def on_agent_unsubscribe(self, data, message):
        agent_id = message.get("agent_id") or data.get("agent_id")
        await self.on_unsubscribe({"agents": [agent_id] if agent_id else []}, message)

    async def on_client_event(self, data, message):
        """Seed 002 client events (``workflow:execute``, ``system:modify``…): the REST route's checks
        and service (``client_events.py``) with the credential loaded again; the answer is a message
        of the same type, or ``connection_error`` carrying the REST envelope's code and status."""
        name = message["type"]
        request_id = data.get("request_id") or message.get("request_id")
        user, auth = await self.identity_rows()
        if user is None:
            return
        ok, body = await database_sync_to_async(client_events.run)(name, user=user, auth=auth, data=data)
        if not ok:
            await self.send_error(
                body.pop("error_code"), body.pop("error_message"), event=name, request_id=request_id, **body
            )
            return
        if name == "system:subscribe_architecture":
            await self.on_subscribe({"events": ["system:architecture_updated"]}, message)
            await self.send_envelope("system:architecture", {"architecture": body, "request_id": request_id})
            return
        await self.send_envelope(name, {**body, "request_id": request_id})

    async def _subscription_error(self, code, message, **extra):
        await self.send_envelope("subscription_error", {"error_code": code, "error_message": message, **extra})

    async def on_command(self, data, message):
        name, agent_id = data.get("command"), data.get("agent_id")
        request_id = data.get("request_id") or message.get("request_id")

        async def fail(code, text):
            await self.send_envelope(
                "command_error",
                {
                    "command": name,
                    "agent_id": agent_id,
                    "error_code": code,
                    "error_message": text,
                    "request_id": request_id,
                },
            )

        command = get_command(name) if isinstance(name, str) else None
        if command is None:
            return await fail(
                "UNSUPPORTED_COMMAND", f"Unknown command {name!r}; available: {', '.join(command_names())}"
            )
        if self.authenticated_identity.role not in command.roles:
            return await fail("PERMISSION_DENIED", f"Role '{self.authenticated_identity.role}' may not '{name}'.")
        parameters = data.get("parameters") if isinstance(data.get("parameters"), dict) else {}
        user, auth = await self.identity_rows()
        if user is None:
            return
        try:
            result = await database_sync_to_async(command.handler)(
                user=user, auth=auth, agent_id=agent_id, parameters=parameters
            )
        except CommandError as exc:
            return await fail(exc.error_code, exc.message)
        await self.send_envelope(
            "command_result",
            {
                "command": name,
                "agent_id": agent_id,
                "status": "accepted",
                "result": result,
                "request_id": request_id,
            },
        )

    async def on_ping(self, data, message):
        await self.send_envelope(
            "pong",
            {
                "server_time": now_iso(),
                "connection_duration": round(time.monotonic() - self.connected_at, 3),
            },
        )

    async def on_configure(self, data, message):
        # the shared default is read-only: the socket's own copy from its first configure on
        config = self.config if isinstance(self.config, dict) else dict(DEFAULT_CONFIG)
        self.config = config
        errors: dict[str, str] = {}
        if "metrics_interval" in data:
            value = data["metrics_interval"]
            if isinstance(value, int) and not isinstance(value, bool) and 1000 <= value <= 3_600_000:
                config["metrics_interval"] = value
            else:
                errors["metrics_interval"] = "an integer of milliseconds between 1000 and 3600000"
        if "buffer_size" in data:
            value = data["buffer_size"]
            if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 1000:
                config["buffer_size"] = value
            else:
                errors["buffer_size"] = "an integer between 1 and 1000"
        if "compression" in data:
            if isinstance(data["compression"], bool):
                config["compression"] = data["compression"]
            else:
                errors["compression"] = "a boolean"
        if errors:
            await self.send_error("INVALID_MESSAGE_FORMAT", "Invalid configuration.", fields=errors)
            return
        await self.send_envelope("configuration_updated", dict(self.config))

    async def on_client_disconnect(self, data, message):
        self._closing = True
        await self.close(code=1000, reason="NORMAL_CLOSURE: the client asked to disconnect.")

    # --- delivery -------------------------------------------------------------------------
    async def on_event(self, event: dict):
        if event["type"] == "system.maintenance":
            await self._on_maintenance(event)
        if not self.events:
            return
        await self._deliver(event)
        if self._reconcile_soon is not None:  # made by the subscribe that made self.events non-empty
            self._reconcile_soon.set()

    async def _on_maintenance(self, event: dict):
        """Every hub socket hears maintenance, subscribed or not; with ``disconnect_seconds`` the
        socket is warned (``disconnect_warning``) and closed 1001 that many seconds later."""
        data = event.get("data") or {}
        if data == getattr(self, "_maintenance", None):
            return  # the console hears one copy per organization
        self._maintenance = data
        if self.seen is None:
            self.seen = SeenSeqs()
        if not catalog.delivery_names(event["type"], self.events) and self.seen.add(event["seq"]):
            await self.send_envelope("maintenance_mode", catalog.shape("maintenance_mode", event), seq=event["seq"])
        seconds = data.get("disconnect_seconds")
        if data.get("enabled") and isinstance(seconds, (int, float)) and not self._closing:
            await self.warn_disconnect("maintenance", float(seconds))
            self._spawn(self._close_later(float(seconds), "MAINTENANCE: the platform is under maintenance."))

    async def _close_later(self, seconds: float, reason: str):
        await asyncio.sleep(seconds)
        if not self._closing:
            self._closing = True
            await self.close(code=CLOSE_GOING_AWAY, reason=reason)

    def _wanted(self, event: dict) -> list[str]:
        names = catalog.delivery_names(event["type"], self.events)
        if not names:
            return []
        if self.agents and event.get("agent_id") and event["agent_id"] not in self.agents:
            return []
        if self.severity and event.get("severity") not in self.severity:
            return []
        if self.components and event.get("component") not in self.components:
            return []
        if not catalog.visible_to(
            event, role=self.authenticated_identity.role, user_id=self.authenticated_identity.user_id
        ):
            return []
        return names

    async def _deliver(self, event: dict):
        names = self._wanted(event)
        if not names:
            return
        if self.seen is None:
            self.seen = SeenSeqs()
        if not self.seen.add(event["seq"]):
            return
        if "metrics_update" in names and len(names) == 1:
            now = time.monotonic()
            if (now - self._last_metrics_at) * 1000 < self.config["metrics_interval"]:
                return
            self._last_metrics_at = now
        event = await seed_payloads.prepare(event, names)  # what the run names' seed fields need
        for name in names:
            await self.send_envelope(name, catalog.shape(name, event), seq=event["seq"])

    async def _replay(self, *, after: int):
        """Everything after ``after`` from the table (gap-free: ids become visible in order)."""
        cursor = after
        while True:
            batch = await database_sync_to_async(self.table_events_after)(cursor, REPLAY_BATCH)
            for event in batch:
                await self._deliver(event)
            if batch:
                cursor = batch[-1]["seq"]
            if len(batch) < REPLAY_BATCH:
                break
        self.watermark = max(cursor, self.watermark or 0)

    # the event table this socket reads (one organization; the console socket widens it)
    def table_latest_seq(self) -> int:
        return _latest_seq(self.authenticated_identity.organization_id)

    def table_events_after(self, after: int, limit: int) -> list[dict]:
        return _events_after(self.authenticated_identity.organization_id, after, limit)

    async def _reconcile_loop(self, reconcile_soon: asyncio.Event):
        interval = settings.KAI_WS_RECONCILE_SECONDS
        while not self._closing:
            try:
                await asyncio.wait_for(reconcile_soon.wait(), timeout=interval)
                await asyncio.sleep(min(1.0, interval))  # let the live burst land first
            except TimeoutError:
                pass
            reconcile_soon.clear()
            if self.events and self.watermark is not None:
                try:
                    await self._replay(after=self.watermark)
                except Exception:  # a database hiccup must not end this socket's catch-up for good
                    logger.warning("reconcile of a hub socket failed; retrying in %ss", interval, exc_info=True)


def _as_int(value):
    try:
        return int(value) if value is not None and str(value).strip() != "" else None
    except (TypeError, ValueError):
        return None


def _latest_seq(organization_id) -> int:
    latest = Event.objects.for_org(organization_id).order_by("-id").values_list("id", flat=True).first()
    return latest or 0


def _events_after(organization_id, after: int, limit: int) -> list[dict]:
    return [
        serialize_event(e) for e in Event.objects.for_org(organization_id).filter(id__gt=after).order_by("id")[:limit]
    ]
