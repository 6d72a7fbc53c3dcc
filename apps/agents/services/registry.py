"""The services registry: registered and discovered services, heartbeats and health refresh."""

from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.agents import selectors
from apps.agents.models import Agent, AgentStatus, Provider, Service, ServiceStatus, ServiceType, Tool
from apps.agents.models import Agent as AgentModel
from apps.agents.services.agents import agent_heartbeat
from apps.agents.services.common import org_lock
from apps.agents.services.providers import check_base_url
from apps.agents.tools.base import ToolError
from apps.agents.tools.custom import guarded_request
from apps.audit.services import audit_record, snapshot
from apps.events.services import publish
from kai_platform.api.errors import Conflict

# --- services registry -------------------------------------------------------------------------


def service_create(*, organization, actor, data: dict) -> Service:
    if data.get("endpoint"):
        check_base_url(organization=organization, base_url=data["endpoint"])
    try:
        with transaction.atomic():
            service = Service.objects.create(
                organization=organization, created_by=actor if getattr(actor, "pk", None) else None, **data
            )
            audit_record(
                organization=organization,
                actor=actor,
                action="service.create",
                instance=service,
                after=snapshot(service),
            )
            publish(
                organization,
                "service.registered",
                {"service_id": str(service.pk), "name": service.name, "service_type": service.service_type},
                actor=actor,
                component="services",
            )
    except IntegrityError:
        raise Conflict(
            f"A {data.get('service_type', 'endpoint')} service named {data['name']!r} is already registered.",
            errors=[{"field": "name", "message": "already registered"}],
        )
    return service


def _upsert_service(
    *, organization, service_type: str, name: str, ref_id=None, endpoint: str = "", capabilities=None, metadata=None
) -> tuple[Service, bool]:
    defaults = {
        "ref_id": ref_id,
        "endpoint": endpoint or "",
        "capabilities": capabilities or [],
        "metadata": metadata or {},
    }
    service, created = Service.objects.update_or_create(
        organization=organization, service_type=service_type, name=name, defaults=defaults
    )
    return service, created


def services_discover(*, organization, actor) -> dict:
    """Register the organization's agents, enabled tools, active providers and the endpoints
    listed in its settings (``service_endpoints: [{name, url}]``)."""
    counts = {"agents": 0, "tools": 0, "providers": 0, "endpoints": 0, "created": 0}
    with transaction.atomic():
        org_lock(organization.pk, 0x2)
        for agent in AgentModel.objects.for_org(organization).only("id", "name", "agent_number", "tools", "agent_type"):
            _, created = _upsert_service(
                organization=organization,
                service_type=ServiceType.AGENT,
                name=f"kai-{agent.agent_number:03d} {agent.name}"[:200],
                ref_id=agent.pk,
                capabilities=list(agent.tools),
                metadata={"agent_number": agent.agent_number, "agent_type": agent.agent_type},
            )
            counts["agents"] += 1
            counts["created"] += created
        for tool in Tool.objects.for_org(organization).filter(enabled=True).only("id", "name", "tool_type"):
            _, created = _upsert_service(
                organization=organization,
                service_type=ServiceType.TOOL,
                name=tool.name,
                ref_id=tool.pk,
                metadata={"tool_type": tool.tool_type},
            )
            counts["tools"] += 1
            counts["created"] += created
        for provider in Provider.objects.for_org(organization).filter(is_active=True):
            _, created = _upsert_service(
                organization=organization,
                service_type=ServiceType.PROVIDER,
                name=provider.name,
                ref_id=provider.pk,
                endpoint=provider.base_url,
                metadata={"provider_type": provider.provider_type},
            )
            counts["providers"] += 1
            counts["created"] += created
        for entry in (organization.settings or {}).get("service_endpoints") or []:
            if not isinstance(entry, dict) or not entry.get("name") or not entry.get("url"):
                continue
            _, created = _upsert_service(
                organization=organization,
                service_type=ServiceType.ENDPOINT,
                name=str(entry["name"])[:200],
                endpoint=str(entry["url"])[:500],
                capabilities=list(entry.get("capabilities") or []),
            )
            counts["endpoints"] += 1
            counts["created"] += created
        audit_record(
            organization=organization,
            actor=actor,
            action="service.discover",
            model="agents.Service",
            object_id="*",
            after=counts,
        )
        publish(organization, "services.discovered", counts, actor=actor, component="services")
    return counts


def service_heartbeat(*, service: Service) -> None:
    cache.set(
        selectors.heartbeat_key("service", service.pk),
        timezone.now().isoformat(),
        timeout=settings.KAI_HEARTBEAT_TTL_SECONDS,
    )
    if service.service_type == ServiceType.AGENT and service.ref_id:
        agent = Agent.objects.filter(pk=service.ref_id, organization_id=service.organization_id).first()
        if agent:
            agent_heartbeat(agent=agent)


def service_refresh(*, service: Service, actor) -> Service:
    """Probe now: an agent by its heartbeat, a tool by being enabled, a provider by its last
    validation, an endpoint by an HTTP GET (SSRF-guarded, 5 s)."""

    now = timezone.now()
    status, error, response_ms, last_seen = _probe(service, now)
    with transaction.atomic():
        Service.objects.filter(pk=service.pk).update(
            status=status, last_error=error[:2000], last_seen=last_seen, response_time_ms=response_ms, updated_at=now
        )
        service.refresh_from_db()
        publish(
            service.organization_id,
            "service.refreshed",
            {"service_id": str(service.pk), "status": status},
            actor=actor,
            component="services",
        )
    return service


def _probe(service: Service, now) -> tuple:
    """(status, error, response time in ms, last seen) of the service by its kind."""
    status, error, response_ms, last_seen = ServiceStatus.UNKNOWN, "", None, service.last_seen
    if service.service_type == ServiceType.AGENT:
        beats = selectors.heartbeats(kind="agent", ids=[service.ref_id]) if service.ref_id else {}
        beat = beats.get(str(service.ref_id))
        agent = (
            Agent.objects.filter(pk=service.ref_id, organization_id=service.organization_id).first()
            if service.ref_id
            else None
        )
        if agent is None:
            status, error = ServiceStatus.OFFLINE, "the agent no longer exists"
        elif beat:
            status, last_seen = (
                (ServiceStatus.DEGRADED if agent.status == AgentStatus.ERROR else ServiceStatus.ONLINE),
                beat,
            )
        else:
            status, error = ServiceStatus.OFFLINE, f"no heartbeat in the last {settings.KAI_HEARTBEAT_TTL_SECONDS} s"
    elif service.service_type == ServiceType.TOOL:
        tool = (
            Tool.objects.filter(pk=service.ref_id, organization_id=service.organization_id).first()
            if service.ref_id
            else None
        )
        status = ServiceStatus.ONLINE if tool and tool.enabled else ServiceStatus.OFFLINE
        last_seen = now if tool and tool.enabled else last_seen
        error = "" if tool and tool.enabled else "the tool is disabled or gone"
    elif service.service_type == ServiceType.PROVIDER:
        provider = (
            Provider.objects.filter(pk=service.ref_id, organization_id=service.organization_id).first()
            if service.ref_id
            else None
        )
        if provider is None or not provider.is_active:
            status, error = ServiceStatus.OFFLINE, "the provider is inactive or gone"
        elif provider.provider_type == "builtin" or provider.last_validation_ok:
            status, last_seen = ServiceStatus.ONLINE, provider.last_validated_at or now
        elif provider.last_validation_ok is False:
            status, error = ServiceStatus.DEGRADED, provider.last_validation_error
    elif service.endpoint:
        return _probe_endpoint(service, now)
    return status, error, response_ms, last_seen


def _probe_endpoint(service: Service, now) -> tuple:
    """An HTTP GET of the service's endpoint (SSRF-guarded, 5 s): online below 500."""
    status, error, response_ms, last_seen = ServiceStatus.UNKNOWN, "", None, service.last_seen
    started = time.perf_counter()
    try:
        result = guarded_request(
            organization=service.organization,
            method="GET",
            url=service.endpoint,
            headers={},
            timeout=5.0,
            max_bytes=1024,
        )
        response_ms = round((time.perf_counter() - started) * 1000, 2)
        status = ServiceStatus.ONLINE if result["status"] < 500 else ServiceStatus.DEGRADED
        last_seen = now
        error = "" if result["status"] < 500 else f"HTTP {result['status']}"
    except ToolError as exc:
        status, error = ServiceStatus.OFFLINE, str(exc)
    return status, error, response_ms, last_seen


def service_delete(*, service: Service, actor) -> None:
    with transaction.atomic():
        audit_record(
            organization=service.organization,
            actor=actor,
            action="service.delete",
            instance=service,
            before=snapshot(service),
        )
        service.delete()
