"""Usage and runtime views: spend, live workers and queue inspection."""

from __future__ import annotations

from django.conf import settings
from django.db.models import Count
from django_redis import get_redis_connection
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions
from rest_framework.response import Response

from apps.agents.models import Agent, Provider
from apps.agents.selectors import heartbeats
from apps.crews import selectors
from apps.crews.serializers import (
    RuntimeAgentSerializer,
    RuntimeStatusSerializer,
    UsageSerializer,
)
from apps.runs import llm as llm_layer
from apps.runs import services as run_services
from apps.runs.lifecycle import concurrency_cap
from apps.runs.models import ACTIVE_STATUSES, Execution
from kai_platform.api.views import KaiAPIView
from kai_platform.celery import app, worker_key_pattern
from kai_platform.tenancy.viewsets import READ_ONLY, TenantScopedViewSet


def _usage_period(request) -> str | None:
    """``?period=``: one of the documented periods (absent: the default)."""
    period = request.query_params.get("period")
    if period is not None and period not in selectors.PERIOD_DAYS:
        raise exceptions.ValidationError({"period": [f"One of: {', '.join(selectors.PERIOD_DAYS)}."]})
    return period


@extend_schema(tags=["runtime"])
class UsageView(KaiAPIView):
    """Organization usage (seed 003): totals, by agent, by day and by model over ``?period=``."""

    @extend_schema(
        parameters=[OpenApiParameter("period", str, enum=list(selectors.PERIOD_DAYS))], responses={200: UsageSerializer}
    )
    def get(self, request):
        body = selectors.usage_summary(organization=self.organization, period=_usage_period(request))
        return Response(UsageSerializer(body).data)


@extend_schema(tags=["runtime"])
class AgentUsageViewSet(TenantScopedViewSet):
    """One agent's usage (seed 003 ``usage/agents/{id}``)."""

    model = Agent
    serializer_class = UsageSerializer
    http_method_names = READ_ONLY

    @extend_schema(
        parameters=[OpenApiParameter("period", str, enum=list(selectors.PERIOD_DAYS))], responses={200: UsageSerializer}
    )
    def retrieve(self, request, *args, **kwargs):
        agent = self.get_object()
        body = selectors.usage_summary(organization=self.organization, period=_usage_period(request), agent_id=agent.pk)
        return Response({"agent_id": agent.pk, "agent_name": agent.name, **UsageSerializer(body).data})


def _live_workers() -> list[str]:
    try:
        marker = ":workers:"
        keys = get_redis_connection("default").scan_iter(worker_key_pattern(), count=1000)
        return sorted(key.decode().split(marker, 1)[-1] for key in keys)  # node name (and pid)
    except Exception:
        return []


def _queue_depths() -> dict:
    depths = {}
    try:
        with app.connection_for_read() as conn:
            client = conn.default_channel.client
            prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("global_keyprefix", "")
            for queue in (settings.CELERY_TASK_DEFAULT_QUEUE, run_services.runs_queue()):
                total = 0
                for step in ("", "\x06\x163", "\x06\x166", "\x06\x169"):
                    total += client.llen(f"{prefix}{queue}{step}")
                depths[queue] = total
    except Exception:
        pass
    return depths


@extend_schema(tags=["runtime"])
class RuntimeStatusView(KaiAPIView):
    """Runtime status (seed 003): agents, running/pending runs, live workers, queue depths, breakers."""

    @extend_schema(responses={200: RuntimeStatusSerializer})
    def get(self, request):
        org = self.organization
        data = selectors.runtime_status(organization=org)
        providers = list(Provider.objects.for_org(org).filter(is_active=True).values("pk", "name", "provider_type"))
        breakers = [
            {
                "provider_id": p["pk"],
                "name": p["name"],
                "provider_type": p["provider_type"],
                **llm_layer.breaker_state(str(p["pk"])),
            }
            for p in providers
        ]
        healthy = data["agents"]["active"] - data["agents"]["errored"]
        return Response(
            {
                "active_agents": data["busy_agents"],
                "pending_tasks": data["counts"]["pending"],
                "healthy_count": max(0, healthy),
                "total_agents": data["agents"]["total"],
                "running_executions": data["counts"]["running"],
                "pending_executions": data["counts"]["pending"],
                "concurrency_limit": concurrency_cap(org),
                "workers": _live_workers(),
                "queues": _queue_depths(),
                "circuit_breakers": breakers,
            }
        )


@extend_schema(tags=["runtime"])
class RuntimeAgentViewSet(TenantScopedViewSet):
    """Agents with health (seed 003 ``runtime/agents``): last heartbeat, circuit breaker state of the
    provider that serves their model, budget used this month and its limit."""

    model = Agent
    serializer_class = RuntimeAgentSerializer
    http_method_names = READ_ONLY

    def scope_queryset(self, queryset):
        return queryset.order_by("agent_number")

    def list(self, request, *args, **kwargs):
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        agents = list(queryset) if page is None else page  # no pagination: the whole list (as DRF's list)
        ids = [a.pk for a in agents]
        beats = heartbeats(kind="agent", ids=ids)
        running = dict(
            Execution.objects.for_org(self.organization)
            .filter(agent_id__in=ids, status__in=ACTIVE_STATUSES)
            .values("agent_id")
            .annotate(n=Count("id"))
            .values_list("agent_id", "n")
        )
        spent = selectors.agent_month_costs(organization=self.organization, agent_ids=ids)
        resolved_cache: dict = {}
        items = []
        for agent in agents:
            model = agent.llm or ""
            if model not in resolved_cache:
                try:
                    resolved_cache[model] = llm_layer.resolve_model(organization=self.organization, model_name=model)
                except Exception:
                    resolved_cache[model] = None
            resolved = resolved_cache[model]
            provider = resolved.provider if resolved else None
            limit = llm_layer.agent_budget_limit(agent)
            used = spent.get(agent.pk, 0)
            if limit is None and provider is not None and provider.budget_limit is not None:
                limit, used = llm_layer.provider_budget(provider)
            items.append(
                {
                    "id": agent.pk,
                    "name": agent.name,
                    "status": agent.status,
                    "last_heartbeat": beats.get(str(agent.pk)) or agent.last_heartbeat,
                    "running_executions": running.get(agent.pk, 0),
                    "circuit_breaker_state": llm_layer.breaker_state(resolved.provider_key)["state"]
                    if resolved
                    else "unknown",
                    "provider": (provider.name if provider else (resolved.provider_type if resolved else None)),
                    "budget_used": used,
                    "budget_limit": limit,
                }
            )
        data = RuntimeAgentSerializer(items, many=True).data  # decimals as the schema says
        return Response(data) if page is None else self.get_paginated_response(data)
