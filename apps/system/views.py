"""System management and observability routes (docs/observability.md) of the organization."""

from __future__ import annotations

import time
from importlib import metadata

from django.db.models import Count
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from prometheus_client import generate_latest
from rest_framework import exceptions, status
from rest_framework.renderers import BaseRenderer
from rest_framework.response import Response

from apps.agents.models import Agent, Provider
from apps.runs import llm as llm_layer
from apps.stepup.permissions import RequiresStepUp
from apps.system import selectors, services
from apps.system.models import SystemModification
from apps.system.prometheus import organization_registry
from apps.system.serializers import (
    ConfigBodySerializer,
    MetricsQuerySerializer,
    ModifyBodySerializer,
    RollbackBodySerializer,
    SystemModificationSerializer,
)
from apps.system.tasks import METRICS
from kai_platform.api.renderers import KaiJSONRenderer, dumps
from kai_platform.api.serializers import validated
from kai_platform.api.views import KaiAPIView
from kai_platform.api.views import SystemHealthView as ReadinessView
from kai_platform.observability import recent_logs
from kai_platform.supervisor import processes as supervised_processes
from kai_platform.tenancy.permissions import IsOrganizationMember
from kai_platform.tenancy.roles import ADMIN_ROLES, ALL_ROLES, Role
from kai_platform.tenancy.viewsets import READ_ONLY, TenantScopedViewSet

STARTED_AT = time.time()
#: who reads the organization's system logs: they can name other members' requests and runs
LOG_ROLES = frozenset({Role.OWNER, Role.ADMIN, Role.DEVELOPER})

try:
    VERSION = metadata.version("kai-platform")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    VERSION = "0.0.0"


@extend_schema(tags=["system"])
class SystemHealthView(ReadinessView):
    """Readiness (database, Redis, broker, workers, with latencies; 503 ``GENERAL_004`` naming
    what is down) plus ``SystemHealth`` (docs/observability.md): uptime, version, the organization's agents by
    state, host resources and external services (its LLM providers' circuit breakers)."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 503: OpenApiTypes.OBJECT})
    def get(self, request):
        response = super().get(request)
        body = response.data
        organization = self.organization

        states = dict(Agent.objects.for_org(organization).values_list("status").annotate(n=Count("id")).order_by())
        resources = selectors.resources()
        external = []
        try:
            for provider in Provider.objects.for_org(organization).filter(is_active=True)[:50]:
                breaker = llm_layer.breaker_state(str(provider.pk))
                external.append(
                    {
                        "name": provider.name,
                        "status": "offline" if breaker.get("state") == "open" else "online",
                        "response_time": None,
                        "last_check": provider.updated_at,
                        "breaker": breaker,
                    }
                )
        except Exception:  # the health answer must not fail on an optional part
            pass
        overall = body.get("status", "unhealthy")
        processes = supervised_processes()
        if overall == "healthy" and (
            states.get("error")
            or any(s["status"] == "offline" for s in external)
            or (processes and processes["status"] != "ok")
        ):
            overall = "degraded"
        body.update(
            {
                "status": overall,
                "uptime": round(time.time() - STARTED_AT, 1),
                "version": VERSION,
                "agents": {
                    "total": sum(states.values()),
                    "error": states.get("error", 0),
                    "active": sum(n for s, n in states.items() if s in ("active", "executing", "idle")),
                },
                "resources": {
                    **resources,
                    "network_latency": body.get("checks", {}).get("redis", {}).get("latency_ms"),
                },
                "external_services": external,
                "processes": processes,
            }
        )
        return response


@extend_schema(tags=["system"])
class ArchitectureView(KaiAPIView):
    """Seed 002 ``SystemArchitecture``: agents, services and LLM providers as nodes, orchestration/
    workflow/model links as connections, crews/orchestrations/workflows, and a Mermaid flowchart."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        return Response(selectors.architecture(organization=self.organization))


@extend_schema(tags=["system"])
class SystemConfigView(KaiAPIView):
    """The organization's settings. PUT merges keys (null removes one) as a versioned
    ``system_setting`` modification that ``system/rollback`` can undo; owners and admins only."""

    permission_classes = [IsOrganizationMember, RequiresStepUp]  # seed 002: a sensitive operation
    action_roles = {"get": ALL_ROLES, "put": ADMIN_ROLES}

    def _body(self):
        organization = self.organization
        organization.refresh_from_db(fields=["settings", "updated_at"])
        return {
            "organization_id": organization.pk,
            "settings": organization.settings,
            "updated_at": organization.updated_at,
        }

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        return Response(self._body())

    @extend_schema(request=ConfigBodySerializer, responses={200: OpenApiTypes.OBJECT})
    def put(self, request):
        data = validated(ConfigBodySerializer, request)
        modification = services.modification_apply(
            organization=self.organization,
            actor=request.user,
            type="system_setting",
            changes=data["settings"],
            description=data.get("description", ""),
        )
        return Response({**self._body(), "modification": SystemModificationSerializer(modification).data})


@extend_schema(tags=["system"])
class ModifyView(KaiAPIView):
    """Apply a change (agent configuration, workflow definition, organization settings or
    architecture metadata) and record it as a ``SystemModification``; owners and admins only."""

    permission_classes = [IsOrganizationMember, RequiresStepUp]  # seed 002: a sensitive operation
    action_roles = {"post": ADMIN_ROLES}

    @extend_schema(request=ModifyBodySerializer, responses={201: SystemModificationSerializer})
    def post(self, request):
        data = validated(ModifyBodySerializer, request)
        modification = services.modification_apply(
            organization=self.organization,
            actor=request.user,
            type=data["type"],
            changes=data["changes"],
            target_id=data.get("target_id") or None,
            description=data.get("description", ""),
        )
        return Response(SystemModificationSerializer(modification).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["system"])
class RollbackView(KaiAPIView):
    """Restore the state before a modification (default: the newest one still reversible). 409 when
    the target changed since (``force`` overrides). Answers the rollback's own modification."""

    permission_classes = [IsOrganizationMember, RequiresStepUp]  # seed 002: a sensitive operation
    action_roles = {"post": ADMIN_ROLES}

    @extend_schema(request=RollbackBodySerializer, responses={200: SystemModificationSerializer})
    def post(self, request):
        data = validated(RollbackBodySerializer, request)
        target = None
        if data.get("modification_id"):
            target = SystemModification.objects.for_org(self.organization).filter(pk=data["modification_id"]).first()
            if target is None:
                raise exceptions.NotFound("No such modification in this organization.")
        rollback = services.modification_rollback(
            organization=self.organization, actor=request.user, modification=target, force=data["force"]
        )
        return Response(SystemModificationSerializer(rollback).data)


@extend_schema(tags=["system"])
class ModificationViewSet(TenantScopedViewSet):
    """The organization's modification history, newest first (``?type=``, ``?target_id=``)."""

    model = SystemModification
    serializer_class = SystemModificationSerializer
    http_method_names = READ_ONLY
    filterset_fields = ["type", "target_id", "rollback_available"]

    def scope_queryset(self, queryset):
        return queryset.order_by("-applied_at")


@extend_schema(tags=["system"])
class PerformanceView(KaiAPIView):
    """Over the last ``?window=`` minutes (default 15, max 120): API latency percentiles,
    throughput and error rate of the organization, its runs, queue depth per Celery queue, live
    workers and host resources."""

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "window", {"type": "integer", "minimum": 1, "maximum": 120}, description="Minutes, 1–120 (default 15)."
            )
        ],
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request):
        try:
            minutes = int(request.query_params.get("window", 15))
        except ValueError:
            minutes = 0
        if not 1 <= minutes <= 120:
            raise exceptions.ValidationError({"window": ["Minutes between 1 and 120."]})
        return Response(selectors.performance(organization=self.organization, minutes=minutes))


@extend_schema(tags=["system"])
class LogsView(KaiAPIView):
    """The organization's newest structured log lines (JSON: ts, level, logger, message,
    request_id, organization, user, execution_id), newest first. Filters: ``level`` (minimum),
    ``logger`` (prefix), ``execution_id``, ``request_id``; ``limit`` ≤ 1000."""

    action_roles = {"get": LOG_ROLES}

    @extend_schema(
        parameters=[
            *(OpenApiParameter(name, str) for name in ("level", "logger", "execution_id", "request_id")),
            OpenApiParameter("limit", int, description="At most 1000 (larger: 1000)."),
        ],
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request):
        params = request.query_params
        try:
            limit = max(1, min(1000, int(params.get("limit", 100))))
        except ValueError:
            raise exceptions.ValidationError({"limit": ["A whole number."]})
        items = recent_logs(
            str(self.organization.pk),
            limit=limit,
            level=params.get("level"),
            logger=params.get("logger"),
            execution_id=params.get("execution_id"),
            request_id=params.get("request_id"),
        )
        return Response({"items": items, "count": len(items), "source": "redis"})


@extend_schema(tags=["runtime"])
class MetricsSeriesView(KaiAPIView):
    """Seed 003 ``GET metrics?metric_name=&period=``: a time series from the per-minute rollups,
    bucketed by period (15m/1h: 1 min, 6h: 5 min, 24h: 15 min, 7d: 1 h, 30d: 6 h). Without
    ``metric_name``: the catalog of metric names."""

    @extend_schema(parameters=[MetricsQuerySerializer], responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        data = validated(MetricsQuerySerializer, request, data=request.query_params.dict())
        if "metric_name" not in data:
            return Response(
                {
                    "metrics": [
                        {"name": name, "aggregation": agg, "description": text} for name, (agg, text) in METRICS.items()
                    ]
                }
            )
        if data["metric_name"] not in METRICS:
            raise exceptions.ValidationError({"metric_name": [f"Unknown metric. Known: {', '.join(METRICS)}."]})
        aggregation = data.get("aggregation") or METRICS[data["metric_name"]][0]
        return Response(
            selectors.metric_series(
                organization=self.organization, name=data["metric_name"], period=data["period"], aggregation=aggregation
            )
        )


class PrometheusTextRenderer(BaseRenderer):
    media_type = "text/plain"
    format = "prometheus"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, (str, bytes)):
            return data if isinstance(data, bytes) else data.encode()
        return dumps(data)  # an error envelope


@extend_schema(tags=["runtime"])
class RuntimeMetricsView(KaiAPIView):
    """Seed 003 ``runtime/metrics``: the organization's metrics in Prometheus text format (runs by
    status, agents by status, LLM tokens and cost by provider, API latency over the last 5 minutes,
    queue depth and live workers). ``?format=json`` answers the same figures as JSON."""

    renderer_classes = [PrometheusTextRenderer, KaiJSONRenderer]

    def perform_content_negotiation(self, request, force=False):
        """``?format=`` names one of the renderers or is a 400 (an empty one too), answered as JSON."""
        chosen = request.query_params.get("format")
        formats = [renderer.format for renderer in self.renderer_classes]
        if chosen is not None and chosen not in formats:
            if force:  # the refusal's own answer: the JSON error envelope
                return KaiJSONRenderer(), KaiJSONRenderer.media_type
            raise exceptions.ValidationError({"format": [f"One of: {', '.join(formats)}."]})
        return super().perform_content_negotiation(request, force)

    @extend_schema(responses={(200, "text/plain"): OpenApiTypes.STR, (200, "application/json"): OpenApiTypes.OBJECT})
    def get(self, request):
        registry, figures = organization_registry(self.organization)
        if request.accepted_renderer.format == "json":
            return Response(figures)
        return Response(generate_latest(registry).decode(), content_type="text/plain; version=0.0.4; charset=utf-8")
