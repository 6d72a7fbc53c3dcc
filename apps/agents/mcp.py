"""Seed 002's MCP message protocol: one dispatcher behind ``POST /api/v1/mcp`` and ``/ws/mcp``.

A request ``{id, version: "1.0", type: "request", method, params, timestamp, source, target?}``
gets a response with the same ``id`` (``type: "response"`` with ``result``, or ``type: "error"``
with ``error: {code, message, data}``). Methods: agent.register, agent.send_message,
workflow.execute, system.get_state, memory.store, memory.query. Error codes follow JSON-RPC:
-32600 invalid request, -32601 unknown method, -32602 invalid params, -32603 internal, plus
-32004 not found and -32003 forbidden.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from django.apps import apps
from django.db import transaction
from django.db.models import Count
from django.utils.dateparse import parse_datetime
from rest_framework import exceptions

from apps.agents import selectors, services
from apps.agents.models import Agent
from apps.events.services import publish
from kai_platform.tenancy.roles import HUMAN_ROLES

INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL_ERROR = -32600, -32601, -32602, -32603
FORBIDDEN, NOT_FOUND, UNAVAILABLE = -32003, -32004, -32005
SERVER_SOURCE = {"agent_number": 0, "agent_id": "kai-platform"}


class MCPError(Exception):
    def __init__(self, code: int, message: str, data=None):
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def reply(request: dict, *, result=None, error: MCPError | None = None) -> dict:
    message = {
        "id": str(request.get("id") or uuid.uuid4()),
        "version": "1.0",
        "type": "error" if error else "response",
        "timestamp": _now(),
        "source": SERVER_SOURCE,
        "target": request.get("source") or None,
    }
    if error:
        message["error"] = {
            "code": error.code,
            "message": error.message,
            **({"data": error.data} if error.data else {}),
        }
    else:
        message["result"] = result
    return message


def validate_message(message) -> dict:
    if not isinstance(message, dict):
        raise MCPError(INVALID_REQUEST, "An MCP message is a JSON object.")
    problems = []
    if not isinstance(message.get("id"), (str, int)) or message.get("id") in ("", None):
        problems.append("id is required")
    if message.get("version", "1.0") != "1.0":
        problems.append('version must be "1.0"')
    if message.get("type", "request") != "request":
        problems.append('only requests are accepted (type "request")')
    if not isinstance(message.get("method"), str):
        problems.append("method is required")
    if not isinstance(message.get("params", {}), dict):
        problems.append("params must be an object")
    if problems:
        raise MCPError(INVALID_REQUEST, "; ".join(problems))
    return message


_METHODS: dict[str, tuple[Callable, frozenset | None]] = {}


def method(name: str, *, roles=None):
    def decorator(fn):
        _METHODS[name] = (fn, frozenset(roles) if roles else None)
        return fn

    return decorator


def handle(message, *, user, auth) -> dict:
    """Answer one MCP request (never raises: errors are MCP error messages)."""
    try:
        request = validate_message(message)
    except MCPError as error:
        return reply(message if isinstance(message, dict) else {}, error=error)
    entry = _METHODS.get(request["method"])
    if entry is None:
        return reply(
            request,
            error=MCPError(METHOD_NOT_FOUND, f"Unknown method '{request['method']}'.", {"methods": sorted(_METHODS)}),
        )
    fn, roles = entry
    if roles is not None and auth.role not in roles:
        return reply(request, error=MCPError(FORBIDDEN, f"Role '{auth.role}' may not call {request['method']}."))
    try:
        result = fn(params=request.get("params") or {}, request=request, user=user, auth=auth)
    except MCPError as error:
        return reply(request, error=error)
    except exceptions.ValidationError as exc:
        return reply(request, error=MCPError(INVALID_PARAMS, "Invalid params.", exc.detail))
    except exceptions.APIException as exc:
        return reply(request, error=MCPError(INVALID_PARAMS, str(exc.detail)))
    return reply(request, result=result)


# --- helpers ------------------------------------------------------------------------------------


def _agent_by_number(auth, number, *, field: str = "agent_number"):
    if not isinstance(number, int) or isinstance(number, bool):
        raise MCPError(INVALID_PARAMS, f"{field} must be an integer.")
    agent = Agent.objects.for_org(auth.organization).filter(agent_number=number).first()
    if agent is None:
        raise MCPError(NOT_FOUND, f"No agent number {number} in this organization.")
    return agent


def _source_agent(request, auth):
    source = request.get("source") or {}
    number = source.get("agent_number")
    if isinstance(number, int) and number > 0:
        return Agent.objects.for_org(auth.organization).filter(agent_number=number).first()
    return None


# --- methods ------------------------------------------------------------------------------------


@method("agent.register", roles=HUMAN_ROLES | {"agent"})
def agent_register(*, params, request, user, auth):
    """Create the agent (or update the one with that ``agent_number``'s capabilities)."""
    name = params.get("name")
    if not isinstance(name, str) or not name.strip():
        raise MCPError(INVALID_PARAMS, "name is required.")
    capabilities = params.get("capabilities") or []
    if not isinstance(capabilities, list) or not all(isinstance(c, str) for c in capabilities):
        raise MCPError(INVALID_PARAMS, "capabilities must be a list of strings.")
    config = {
        "capabilities": capabilities,
        "voice_commands": params.get("voice_commands") or [],
        "config_schema": params.get("config_schema") or {},
    }
    number = params.get("agent_number")
    existing = None
    if number is not None:
        existing = (
            Agent.objects.for_org(auth.organization).filter(agent_number=number).first()
            if isinstance(number, int)
            else None
        )
    if existing is not None:
        agent = services.agent_update(
            agent=existing, actor=user, data={"name": name, "config": {**(existing.config or {}), **config}}
        )
        created = False
    else:
        if auth.role == "agent":
            raise MCPError(FORBIDDEN, "The agent role may register capabilities of an existing agent only.")
        agent = services.agent_create(
            organization=auth.organization,
            actor=user,
            data={"name": name, "description": params.get("description", ""), "config": config},
        )
        created = True
    return {
        "agent_id": str(agent.pk),
        "agent_number": agent.agent_number,
        "created": created,
        "capabilities": capabilities,
    }


@method("agent.send_message")
def agent_send_message(*, params, request, user, auth):
    """Deliver a message to another agent's subscribers as ``agent:message`` (or to every agent as
    ``agent:broadcast`` with ``target.broadcast``)."""
    source = _source_agent(request, auth)
    target = request.get("target") or {}
    broadcast = bool(target.get("broadcast"))
    data = {
        "from_agent": source.agent_number if source else (request.get("source") or {}).get("agent_number"),
        "message_type": params.get("message_type", "message"),
        "data": params.get("data"),
        "requires_response": bool(params.get("requires_response", False)),
        "timestamp": _now(),
        "message_id": str(request["id"]),
    }
    if broadcast:
        targets = params.get("target_agents")
        with transaction.atomic():
            event = publish(
                auth.organization,
                "agent.broadcast",
                {**data, "target_agents": targets},
                agent=source,
                actor=user,
                component="mcp",
            )
        return {"delivered": True, "broadcast": True, "event_seq": event.pk}
    number = params.get("target_agent", target.get("agent_number"))
    agent = _agent_by_number(auth, number, field="target_agent")
    with transaction.atomic():
        event = publish(
            auth.organization,
            "agent.message",
            {**data, "to_agent": agent.agent_number},
            agent=agent,
            actor=user,
            owner=agent.created_by,
            component="mcp",
        )
    return {"delivered": True, "to_agent": agent.agent_number, "agent_id": str(agent.pk), "event_seq": event.pk}


@method("system.get_state")
def system_get_state(*, params, request, user, auth):
    state: dict = {"organization_id": str(auth.organization.pk), "timestamp": _now()}
    agents = Agent.objects.for_org(auth.organization)
    if params.get("include_agents", True):
        state["agents"] = {
            "total": agents.count(),
            "by_status": {
                row["status"]: row["n"] for row in agents.values("status").annotate(n=Count("id")).order_by()
            },
            "items": [
                {"agent_id": str(a["id"]), "agent_number": a["agent_number"], "name": a["name"], "status": a["status"]}
                for a in agents.values("id", "agent_number", "name", "status")[:200]
            ],
        }
    if params.get("include_workflows", False):
        state["workflows"] = (
            {"available": False}
            if not apps.is_installed("apps.workflows")
            else {
                "available": True,
                "total": apps.get_model("workflows", "Workflow").objects.for_org(auth.organization).count(),
            }
        )
    if params.get("include_performance", False) and apps.is_installed("apps.runs"):
        Execution = apps.get_model("runs", "Execution")
        state["performance"] = {
            "runs_by_status": {
                row["status"]: row["n"]
                for row in Execution.objects.for_org(auth.organization)
                .values("status")
                .annotate(n=Count("id"))
                .order_by()
            }
        }
    return state


@method("memory.store")
def memory_store(*, params, request, user, auth):
    agent = _agent_by_number(auth, params.get("agent_number"))
    memory_type = params.get("memory_type")
    if not isinstance(memory_type, str) or not memory_type:
        raise MCPError(INVALID_PARAMS, "memory_type is required.")
    tags = params.get("tags") or []
    ttl = params.get("ttl")
    if not isinstance(tags, list) or (ttl is not None and (not isinstance(ttl, int) or ttl <= 0)):
        raise MCPError(INVALID_PARAMS, "tags is a list; ttl a positive number of seconds.")
    entry = services.memory_store(
        agent=agent,
        actor=user,
        memory_type=memory_type,
        content=params.get("content"),
        tags=[str(t) for t in tags],
        ttl=ttl,
    )
    return {
        "memory_id": str(entry.pk),
        "agent_number": agent.agent_number,
        "expires_at": entry.expires_at.isoformat() if entry.expires_at else None,
    }


@method("memory.query")
def memory_query(*, params, request, user, auth):
    agent = _agent_by_number(auth, params.get("agent_number"))
    since = params.get("since")
    since_at = parse_datetime(since) if isinstance(since, str) else None
    if since is not None and since_at is None:
        raise MCPError(INVALID_PARAMS, "since must be an ISO 8601 date-time.")
    limit = params.get("limit", 50)
    if not isinstance(limit, int) or not 1 <= limit <= 500:
        raise MCPError(INVALID_PARAMS, "limit must be between 1 and 500.")
    rows = selectors.memory_query(
        agent=agent, memory_type=params.get("memory_type"), tags=params.get("tags"), since=since_at, limit=limit
    )
    return {
        "agent_number": agent.agent_number,
        "memories": [
            {
                "memory_id": str(m.pk),
                "memory_type": m.memory_type,
                "content": m.content,
                "tags": m.tags,
                "created_at": m.created_at.isoformat(),
                "expires_at": m.expires_at.isoformat() if m.expires_at else None,
            }
            for m in rows
        ],
    }
