"""Agents: YAML/JSON configuration parsing, create/update/delete/restart, heartbeats and memory."""

from __future__ import annotations

import json
from datetime import timedelta

import yaml
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from rest_framework import exceptions

from apps.agents import selectors
from apps.agents.models import AGENT_CONFIG_FIELDS, Agent, AgentMemory, AgentStatus, AgentVersion
from apps.agents.services.common import org_lock
from apps.audit.services import audit_record, snapshot
from apps.events.services import publish

# --- configuration parsing ---------------------------------------------------------------------


def parse_yaml_mapping(text: str, *, field: str) -> dict:
    """YAML text → mapping; a syntax error is a 400 naming the field, line and column."""
    if not (text or "").strip():
        return {}
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise exceptions.ValidationError({field: [f"Invalid YAML at {where}{exc.problem or exc.context}"]})
    except yaml.YAMLError as exc:
        raise exceptions.ValidationError({field: [f"Invalid YAML: {exc}"]})
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise exceptions.ValidationError({field: [f"Must be a YAML mapping, not a {type(data).__name__}."]})
    return data


def parse_json_mapping(value, *, field: str) -> dict:
    """A JSON object, or a string holding one; a syntax error names the line and column."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise exceptions.ValidationError(
                {field: [f"Invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"]}
            )
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise exceptions.ValidationError({field: ["Must be a JSON object."]})
    return value


_YAML_FIELDS = (
    "description",
    "role",
    "goal",
    "backstory",
    "llm",
    "tools",
    "allow_delegation",
    "verbose",
    "agent_type",
    "voice_enabled",
)


def agent_fields_from_yaml(config: dict) -> dict:
    """Agent fields a YAML definition carries (CrewAI-style keys; ``model`` and ``provider.model`` mean ``llm``).
    A single top-level key holding the definition (``researcher: {role: …}``) is unwrapped."""
    if len(config) == 1:
        (only,) = config.values()
        if isinstance(only, dict) and ("role" in only or "goal" in only):
            config = only
    fields = {key: config[key] for key in _YAML_FIELDS if key in config}
    if "llm" not in fields:
        if isinstance(config.get("model"), str):
            fields["llm"] = config["model"]
        elif isinstance(config.get("provider"), dict) and config["provider"].get("model"):
            fields["llm"] = config["provider"]["model"]
    if "tools" in fields:
        tools = fields["tools"]
        if not isinstance(tools, list) or not all(isinstance(t, str) for t in tools):
            raise exceptions.ValidationError({"config_yaml": ["`tools` must be a list of tool names."]})
    for key in ("description", "role", "goal", "backstory", "llm", "agent_type"):
        if key in fields and not isinstance(fields[key], str):
            fields[key] = str(fields[key])
    for key in ("allow_delegation", "verbose", "voice_enabled"):
        if key in fields and not isinstance(fields[key], bool):
            raise exceptions.ValidationError({"config_yaml": [f"`{key}` must be true or false."]})
    return fields


def check_tools(*, organization, names: list[str]) -> list[str]:
    names = list(dict.fromkeys(n.strip() for n in names if n and n.strip()))
    known = selectors.tool_names(organization=organization)
    unknown = [n for n in names if n not in known]
    if unknown:
        listed = ", ".join(sorted(known)) or "none"
        raise exceptions.ValidationError(
            {
                "tools": [
                    f"Unknown tool{'s' if len(unknown) > 1 else ''}: {', '.join(repr(n) for n in unknown)}. "
                    f"Known tools: {listed}."
                ]
            }
        )
    return names


def _agent_values(*, organization, data: dict, instance: Agent | None = None) -> dict:
    """Resolve config/config_yaml into field values; explicit body fields win over YAML ones."""
    values = dict(data)
    if "config" in values:
        values["config"] = parse_json_mapping(values["config"], field="config")
    if "config_yaml" in values:
        from_yaml = agent_fields_from_yaml(parse_yaml_mapping(values["config_yaml"], field="config_yaml"))
        for key, value in from_yaml.items():
            values.setdefault(key, value)
    if "tools" in values:
        values["tools"] = check_tools(organization=organization, names=values["tools"] or [])
    return values


def _config_snapshot(agent: Agent) -> dict:
    return {field: getattr(agent, field) for field in AGENT_CONFIG_FIELDS}


# --- agents ------------------------------------------------------------------------------------


def agent_create(*, organization, actor, data: dict, template: str | None = None) -> Agent:
    """``template``: the template it was made from (named in the ``agent.created`` event)."""
    values = _agent_values(organization=organization, data=data)
    if not values.get("name"):
        raise exceptions.ValidationError({"name": ["This field is required."]})
    with transaction.atomic():
        org_lock(organization.pk, 0x1)
        last = (
            Agent.objects.for_org(organization).order_by("-agent_number").values_list("agent_number", flat=True).first()
        )
        agent = Agent(
            organization=organization,
            created_by=actor if getattr(actor, "pk", None) else None,
            agent_number=(last or 0) + 1,
            **values,
        )
        if not agent.is_active:
            agent.status = AgentStatus.DISABLED
        agent.save()
        AgentVersion.objects.create(
            organization=organization,
            created_by=agent.created_by,
            agent=agent,
            version=1,
            snapshot=snapshot(agent, list(AGENT_CONFIG_FIELDS)),
            changed_fields=list(values),
        )
        audit_record(
            organization=organization, actor=actor, action="agent.create", instance=agent, after=snapshot(agent)
        )
        publish(
            organization,
            "agent.created",
            {
                "agent_id": str(agent.pk),
                "agent_number": agent.agent_number,
                "name": agent.name,
                "template": template,
                "created_by": str(actor.pk) if getattr(actor, "pk", None) else None,
                "status": agent.status,
            },
            agent=agent,
            actor=actor,
            owner=agent.created_by,
            component="agents",
        )
    return agent


def agent_update(*, agent: Agent, actor, data: dict) -> Agent:
    values = _agent_values(organization=agent.organization_id, data=data, instance=agent)
    with transaction.atomic():
        agent = Agent.objects.select_for_update().get(pk=agent.pk)
        before = snapshot(agent)
        old_config = _config_snapshot(agent)
        old_status = agent.status
        for key, value in values.items():
            setattr(agent, key, value)
        if "is_active" in values and "status" not in values:
            if not agent.is_active:
                agent.status = AgentStatus.DISABLED
            elif old_status == AgentStatus.DISABLED:
                agent.status = AgentStatus.IDLE
        changed = [f for f in AGENT_CONFIG_FIELDS if _config_snapshot(agent)[f] != old_config[f]]
        if changed:
            agent.version += 1
        agent.save()
        if changed:
            AgentVersion.objects.create(
                organization_id=agent.organization_id,
                created_by=actor if getattr(actor, "pk", None) else None,
                agent=agent,
                version=agent.version,
                snapshot=snapshot(agent, list(AGENT_CONFIG_FIELDS)),
                changed_fields=changed,
            )
        audit_record(
            organization=agent.organization,
            actor=actor,
            action="agent.update",
            instance=agent,
            before=before,
            after=snapshot(agent),
        )
        if changed:
            publish(
                agent.organization_id,
                "agent.updated",
                {"agent_id": str(agent.pk), "version": agent.version, "changed_fields": changed},
                agent=agent,
                actor=actor,
                owner=agent.created_by,
                component="agents",
            )
        if agent.status != old_status:
            _publish_status(agent, old_status, actor, reason="updated_by_user")
    return agent


def _publish_status(agent: Agent, old_status: str, actor, *, reason: str) -> None:
    """``agent.status_changed`` with seed 004's fields (``reason``, ``last_inference``,
    ``inference_count``) and what seed 002's ``AgentStatus`` objects are built from."""
    publish(
        agent.organization_id,
        "agent.status_changed",
        {
            "agent_id": str(agent.pk),
            "agent_number": agent.agent_number,
            "old_status": old_status,
            "new_status": agent.status,
            "timestamp": timezone.now().isoformat(),
            "reason": reason,
            "last_inference": agent.last_execution.isoformat() if agent.last_execution else None,
            "inference_count": agent.execution_count,
            "last_error": agent.last_error or None,
        },
        agent=agent,
        actor=actor,
        owner=agent.created_by,
        component="agents",
    )


def agent_delete(*, agent: Agent, actor, reason: str = "user_request") -> None:
    with transaction.atomic():
        audit_record(
            organization=agent.organization, actor=actor, action="agent.delete", instance=agent, before=snapshot(agent)
        )
        publish(
            agent.organization_id,
            "agent.deleted",
            {
                "agent_id": str(agent.pk),
                "agent_number": agent.agent_number,
                "name": agent.name,
                "deleted_by": str(actor.pk) if getattr(actor, "pk", None) else None,
                "reason": reason,
            },
            agent=agent,
            actor=actor,
            owner=agent.created_by,
            component="agents",
        )
        agent.delete()


def agent_restart(*, agent: Agent, actor) -> Agent:
    """Back to a clean state: idle (disabled agents stay disabled), error cleared."""
    with transaction.atomic():
        agent = Agent.objects.select_for_update().get(pk=agent.pk)
        before = snapshot(agent, ["status", "last_error"])
        old_status = agent.status
        agent.status = AgentStatus.IDLE if agent.is_active else AgentStatus.DISABLED
        agent.last_error = ""
        agent.save(update_fields=["status", "last_error", "updated_at"])
        audit_record(
            organization=agent.organization,
            actor=actor,
            action="agent.restart",
            instance=agent,
            before=before,
            after=snapshot(agent, ["status", "last_error"]),
        )
        publish(
            agent.organization_id,
            "agent.restarted",
            {"agent_id": str(agent.pk), "old_status": old_status, "status": agent.status},
            agent=agent,
            actor=actor,
            owner=agent.created_by,
            component="agents",
        )
        if agent.status != old_status:
            _publish_status(agent, old_status, actor, reason="restarted_by_user")
    return agent


def agent_heartbeat(*, agent: Agent) -> None:
    """Seed 000 heartbeat: liveness in Redis at once; ``last_heartbeat`` in the database at most every 10 s."""
    now = timezone.now()
    cache.set(selectors.heartbeat_key("agent", agent.pk), now.isoformat(), timeout=settings.KAI_HEARTBEAT_TTL_SECONDS)
    if cache.add(f"heartbeat-db:{agent.pk}", 1, timeout=10):
        Agent.objects.filter(pk=agent.pk).update(last_heartbeat=now)


def agent_record_execution(*, agent: Agent, seconds: float, error: str = "", runs: int = 1) -> None:
    """Roll ``runs`` finished executions (``seconds`` in all) into the agent's counters (a single
    UPDATE, race-free)."""
    n = F("execution_count")
    updates = {
        "execution_count": n + runs,
        "last_execution": timezone.now(),
        "average_execution_time": (F("average_execution_time") * n + seconds) / (n + runs),
    }
    if error:
        updates["last_error"] = error[:2000]
    Agent.objects.filter(pk=agent.pk).update(**updates)
    minute = int(timezone.now().timestamp() // 60)
    key = f"agent-calls:{agent.pk}:{minute}"
    cache.add(key, 0, timeout=120)
    try:
        cache.incr(key, runs)
    except ValueError:
        cache.set(key, runs, timeout=120)


# --- memory ------------------------------------------------------------------------------------


def memory_store(*, agent: Agent, actor, memory_type: str, content, tags: list[str], ttl: int | None) -> AgentMemory:
    expires_at = timezone.now() + timedelta(seconds=int(ttl)) if ttl else None
    with transaction.atomic():
        memory = AgentMemory.objects.create(
            organization_id=agent.organization_id,
            agent=agent,
            memory_type=memory_type or "general",
            content=content,
            tags=list(dict.fromkeys(tags or [])),
            expires_at=expires_at,
            created_by=actor if getattr(actor, "pk", None) else None,
        )
        audit_record(
            organization=agent.organization,
            actor=actor,
            action="agent_memory.create",
            instance=memory,
            after=snapshot(memory, ["id", "agent", "memory_type", "tags", "expires_at"]),
        )
        publish(
            agent.organization_id,
            "agent.memory_stored",
            {
                "agent_id": str(agent.pk),
                "memory_id": str(memory.pk),
                "memory_type": memory.memory_type,
                "tags": memory.tags,
            },
            agent=agent,
            actor=actor,
            owner=agent.created_by,
            component="agents",
        )
    return memory


def memory_purge_expired(*, batch: int = 5000) -> int:
    """Platform-wide housekeeping: delete expired memories (reads already hide them)."""
    ids = list(AgentMemory.objects.filter(expires_at__lte=timezone.now()).values_list("pk", flat=True)[:batch])
    if ids:
        AgentMemory.objects.filter(pk__in=ids).delete()
    return len(ids)
