"""Reads of the agents app."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache
from django.db.models import Q, Sum
from django.utils import timezone

from apps.agents.models import Agent, AgentMemory, Credential, Provider, ProviderUsage, Tool
from kai_platform.llm.netguard import AllowList


def agents_for_list(*, queryset):
    """The agents list: one query, no per-row lookups (tools are an array column)."""
    return queryset.order_by("-created_at", "id")


def agent_rows(*, queryset, fields: list[str]):
    """The list's rows as plain dicts keyed like the serializer's output (FKs as ids), without
    building model instances: the agents list is the hottest read of the API."""
    return queryset.values(*fields)


def network_allowlist(*, organization) -> AllowList:
    org_settings = getattr(organization, "settings", None) or {}
    return AllowList.from_entries(settings.KAI_NETWORK_ALLOWLIST, org_settings.get("network_allowlist") or [])


def tool_names(*, organization) -> set[str]:
    return set(Tool.objects.for_org(organization).values_list("name", flat=True))


def tools_for_agent(*, agent) -> list[Tool]:
    if not agent.tools:
        return []
    return list(Tool.objects.for_org(agent.organization_id).filter(name__in=agent.tools, enabled=True))


def memory_query(
    *,
    agent,
    memory_type: str | None = None,
    tags: list[str] | None = None,
    since: datetime | None = None,
    limit: int | None = None,
):
    """The agent's live memories, newest first; expired entries are never returned."""
    now = timezone.now()
    queryset = (
        AgentMemory.objects.for_org(agent.organization_id)
        .filter(agent=agent)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
    )
    if memory_type:
        queryset = queryset.filter(memory_type=memory_type)
    if tags:
        queryset = queryset.filter(tags__contains=list(tags))
    if since:
        queryset = queryset.filter(created_at__gte=since)
    queryset = queryset.order_by("-created_at")
    return queryset[:limit] if limit else queryset


def month_start(today: date | None = None) -> date:
    today = today or timezone.now().date()
    return today.replace(day=1)


def provider_month_spend(*, provider) -> Decimal:
    total = (
        ProviderUsage.objects.for_org(provider.organization_id)
        .filter(provider=provider, day__gte=month_start())
        .aggregate(total=Sum("cost"))["total"]
    )
    return total or Decimal(0)


def provider_usage(*, provider, days: int) -> dict:
    since = timezone.now().date() - timedelta(days=days - 1)
    rows = list(
        ProviderUsage.objects.for_org(provider.organization_id)
        .filter(provider=provider, day__gte=since)
        .order_by("day")
    )
    totals = {"input_tokens": 0, "output_tokens": 0, "tokens": 0, "cost": Decimal(0), "calls": 0}
    by_day = []
    for row in rows:
        tokens = row.input_tokens + row.output_tokens
        by_day.append(
            {
                "day": row.day,
                "input_tokens": row.input_tokens,
                "output_tokens": row.output_tokens,
                "tokens": tokens,
                "cost": row.cost,
                "calls": row.calls,
            }
        )
        totals["input_tokens"] += row.input_tokens
        totals["output_tokens"] += row.output_tokens
        totals["tokens"] += tokens
        totals["cost"] += row.cost
        totals["calls"] += row.calls
    spend = provider_month_spend(provider=provider)
    remaining = None if provider.budget_limit is None else max(Decimal(0), provider.budget_limit - spend)
    return {
        "provider_id": provider.pk,
        "since": since,
        "days": days,
        "totals": totals,
        "by_day": by_day,
        "budget_limit": provider.budget_limit,
        "current_spend": spend,
        "budget_remaining": remaining,
    }


def credential_by_name(*, organization, name: str) -> Credential | None:
    return Credential.objects.for_org(organization).filter(name=name).first()


def providers_active(*, organization) -> list[Provider]:
    return list(
        Provider.objects.for_org(organization)
        .filter(is_active=True)
        .select_related("credential")
        .order_by("-is_default", "created_at")
    )


# --- liveness (Redis) --------------------------------------------------------------------------


def heartbeat_key(kind: str, object_id) -> str:
    return f"heartbeat:{kind}:{object_id}"


def heartbeats(*, kind: str, ids) -> dict[str, datetime]:
    """Last heartbeat time per id, from Redis (one round trip); missing = none within the TTL."""
    ids = [str(i) for i in ids]
    if not ids:
        return {}
    values = cache.get_many([heartbeat_key(kind, i) for i in ids])
    out = {}
    for i in ids:
        raw = values.get(heartbeat_key(kind, i))
        if raw is not None:
            out[i] = datetime.fromisoformat(raw)
    return out


def agent_api_calls_last_minute(*, agent) -> int:
    now = int(timezone.now().timestamp() // 60)
    return int(cache.get(f"agent-calls:{agent.pk}:{now}") or 0)


def agent_by_ref(*, organization, ref) -> Agent | None:
    """An agent by id, agent_number or name (heartbeats name agents like ``kai-001``)."""
    queryset = Agent.objects.for_org(organization)
    text = str(ref)
    try:
        return queryset.filter(pk=uuid.UUID(text)).first()
    except ValueError:
        pass
    digits = text.rsplit("-", 1)[-1]
    if digits.isdigit():
        found = queryset.filter(agent_number=int(digits)).first()
        if found:
            return found
    return queryset.filter(name=text).first()
