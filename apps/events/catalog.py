"""Event names a hub client can subscribe to, and how internal event types map onto them.

Services publish dotted internal types (``agent.status_changed``, ``execution.completed``…).
Hub clients subscribe with seed 004 names (``agent_status``, ``inference_completed``…), seed 002
names (``agent:status_changed``, ``workflow:step_completed``…), or an internal dotted type
itself. One internal event is delivered once under each subscribed name it maps to.
"""

from __future__ import annotations

import re
from collections.abc import Set as AbstractSet

from apps.events import seed_payloads
from kai_platform.tenancy.roles import Role

SEED_004_EVENTS = frozenset(
    {
        "agent_status",
        "agent_created",
        "agent_deleted",
        "agent_updated",
        "inference_started",
        "inference_progress",
        "inference_completed",
        "inference_failed",
        "metrics_update",
        "performance_alert",
        "system_alert",
        "system_status",
        "maintenance_mode",
        "connection_pool_info",
        "entity_created",
        "entity_updated",
        "entity_deleted",
        "relationship_created",
        "relationship_updated",
        "relationship_deleted",
    }
)
SEED_002_EVENTS = frozenset(
    {
        "agent:status_changed",
        "agent:execution_started",
        "agent:execution_completed",
        "agent:error",
        "voice:command_received",
        "voice:processing",
        "voice:response_ready",
        "system:architecture_updated",
        "system:performance_alert",
        "system:health_changed",
        "workflow:triggered",
        "workflow:step_completed",
        "workflow:completed",
        "agent:message",
        "agent:broadcast",
    }
)
PLATFORM_EVENTS = frozenset({"approval_requested", "approval_resolved", "quota_warning", "execution_status"})
#: short names the seed's own examples use
SUBSCRIPTION_ALIASES = {"metrics": "metrics_update", "system_alerts": "system_alert"}

#: platform-wide notices every member receives, whatever their role's visibility rule
BROADCAST_TYPES = frozenset({"system.alert", "system.maintenance"})

SUPPORTED_EVENTS = SEED_004_EVENTS | SEED_002_EVENTS | PLATFORM_EVENTS
_INTERNAL_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")

#: internal type → public names it is also delivered as
PUBLIC_NAMES: dict[str, tuple[str, ...]] = {
    "agent.status_changed": ("agent_status", "agent:status_changed"),
    "agent.created": ("agent_created",),
    "agent.updated": ("agent_updated",),
    "agent.deleted": ("agent_deleted",),
    "agent.message": ("agent:message",),
    "agent.broadcast": ("agent:broadcast",),
    "execution.running": ("inference_started", "agent:execution_started", "execution_status"),
    "execution.progress": ("inference_progress",),
    "execution.completed": ("inference_completed", "agent:execution_completed", "execution_status"),
    "execution.failed": ("inference_failed", "agent:error", "execution_status"),
    "execution.cancelled": ("inference_failed", "execution_status"),
    "execution.pending": ("execution_status",),
    "execution.preparing": ("execution_status",),
    "execution.waiting_for_approval": ("execution_status",),
    "metrics.update": ("metrics_update",),
    "system.performance_alert": ("performance_alert", "system:performance_alert"),
    "system.alert": ("system_alert",),
    "system.maintenance": ("maintenance_mode",),
    "system.status": ("system_status", "system:health_changed"),
    "system.architecture_updated": ("system:architecture_updated",),
    "workflow.triggered": ("workflow:triggered",),
    "workflow.step_completed": ("workflow:step_completed",),
    "workflow.completed": ("workflow:completed",),
    "voice.command_received": ("voice:command_received",),
    "voice.processing": ("voice:processing",),
    "voice.response_ready": ("voice:response_ready",),
    "approval.requested": ("approval_requested",),
    "approval.resolved": ("approval_resolved",),
    "quota.warning": ("quota_warning",),
    "knowledge.entity.created": ("entity_created",),
    "knowledge.entity.updated": ("entity_updated",),
    "knowledge.entity.deleted": ("entity_deleted",),
    "knowledge.relationship.created": ("relationship_created",),
    "knowledge.relationship.updated": ("relationship_updated",),
    "knowledge.relationship.deleted": ("relationship_deleted",),
}


def normalize_subscription(name: str) -> str | None:
    """The canonical subscribable name, or None when the name is not supported."""
    if not isinstance(name, str):
        return None
    name = SUBSCRIPTION_ALIASES.get(name, name)
    if name in SUPPORTED_EVENTS or _INTERNAL_RE.match(name):
        return name
    return None


def delivery_names(event_type: str, subscribed: AbstractSet[str]) -> list[str]:
    """Under which of the subscribed names an event of ``event_type`` is delivered."""
    names = [event_type] if event_type in subscribed else []
    names += [name for name in PUBLIC_NAMES.get(event_type, ()) if name in subscribed]
    return names


def shape(name: str, event: dict) -> dict:
    """The ``data`` of a hub message: the event's data plus the references the seeds name."""
    data = dict(event.get("data") or {})
    if event.get("agent_id"):
        data.setdefault("agent_id", event["agent_id"])
    if event.get("execution_id"):
        data.setdefault("execution_id", event["execution_id"])
        if name.startswith("inference_"):
            data.setdefault("inference_id", event["execution_id"])

    return seed_payloads.shape(name, data, event)


def visible_to(event: dict, *, role: str | None, user_id) -> bool:
    """Members with role ``user`` see only events they caused or own, and the platform's broadcasts."""
    if role != Role.USER or event["type"] in BROADCAST_TYPES:
        return True
    me = str(user_id)
    return event.get("actor_id") == me or event.get("owner_id") == me
