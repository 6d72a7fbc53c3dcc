"""Execution views: start/cancel runs, history, logs, traces and task status."""

from __future__ import annotations

import time

import django_filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.agents import calls
from apps.agents.models import Agent
from apps.crews import selectors, services, specs
from apps.crews.models import Crew, Orchestration
from apps.crews.serializers import (
    SPAN_FIELDS,
    ExecutionCreatedSerializer,
    ExecutionCreateSerializer,
    ExecutionHistorySerializer,
    ExecutionLogPageSerializer,
    ExecutionSerializer,
    GenerateNameSerializer,
    TaskStatusSerializer,
    TraceDetailSerializer,
    TraceSerializer,
)
from apps.runs import services as run_services
from apps.runs.models import Execution, ExecutionKind
from kai_platform.api.filters import IsoDateTimeFilter
from kai_platform.api.serializers import validated
from kai_platform.tenancy.viewsets import READ_ONLY, TenantScopedViewSet


def _status_filter(queryset, name, value):
    values = [v.strip().upper() for v in value.split(",") if v.strip()]
    return queryset.filter(status__in=values) if values else queryset


class ExecutionFilter(django_filters.FilterSet):
    status = django_filters.CharFilter(method=_status_filter.__name__, help_text="One or more, comma-separated.")
    kind = django_filters.ChoiceFilter(choices=ExecutionKind.choices)
    crew = django_filters.UUIDFilter(field_name="crew_id")
    crew_id = django_filters.UUIDFilter(field_name="crew_id")
    orchestration_id = django_filters.UUIDFilter(field_name="orchestration_id")
    agent = django_filters.UUIDFilter(field_name="agent_id")
    agent_id = django_filters.UUIDFilter(field_name="agent_id")
    parent_id = django_filters.UUIDFilter(field_name="parent_id")
    created_after = IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    start_date = django_filters.DateFilter(field_name="created_at", lookup_expr="date__gte")
    end_date = django_filters.DateFilter(field_name="created_at", lookup_expr="date__lte")

    class Meta:
        model = Execution
        fields: list = []

    def _status_filter(self, queryset, name, value):
        return _status_filter(queryset, name, value)


# --- crews -------------------------------------------------------------------------------------


def created_body(execution: Execution, message: str = "Execution started successfully") -> dict:
    return {
        "execution_id": execution.pk,
        "status": execution.status,
        "message": message,
        "run_name": execution.run_name,
        "trace_id": execution.trace_id,
    }


def generated_run_name(*, agents_yaml: str = "", tasks_yaml: str = "", crew_name: str = "") -> str:
    spec = specs.parse_crew(agents_yaml or "", tasks_yaml or "") if (agents_yaml or tasks_yaml) else None
    lead = crew_name or (spec.agents[0].role if spec and spec.agents else "") or "Run"
    task = spec.tasks[0].key.replace("_", " ").title() if spec and spec.tasks else ""
    stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    return " - ".join(p for p in (lead.strip()[:120], task[:80], stamp) if p)


def _common(data: dict) -> dict:
    """What every kind of run takes from the request alike."""
    return {"inputs": data["inputs"], "params": data["params"], "priority": data["priority"]}


def _start_orchestration(org, actor, data: dict) -> Execution:
    orchestration = _get_or_400(Orchestration, org, data["orchestration_id"], "orchestration_id")
    return services.orchestration_start(orchestration=orchestration, actor=actor, **_common(data))


def _start_agent_task(org, actor, data: dict) -> Execution:
    """One task for one agent: ``description`` (and ``expected_output``) is its definition."""
    agent = _get_or_400(Agent, org, data["agent_id"], "agent_id")
    services.check_inputs(texts=(data["description"], data.get("expected_output", "")), inputs=data["inputs"])
    return calls.agent_call_start(
        actor=actor,
        kind=ExecutionKind.AGENT_TASK,
        agent=agent,
        run_name=data.get("run_name") or f"{agent.name} - {data['description'][:60]}",
        definition={"description": data["description"], "expected_output": data.get("expected_output", "")},
        model=data.get("model") or "",
        max_attempts=data["max_attempts"],
        **_common(data),
    )


def _crew_definition(org, data: dict) -> tuple[Crew | None, dict]:
    """The saved crew ``crew_id`` names (the request may override its process and model), or the
    inline ``agents_yaml`` + ``tasks_yaml``; and the run's definition from it."""
    if not data.get("crew_id"):
        return None, {
            "name": data.get("run_name") or "",
            "agents_yaml": data["agents_yaml"],
            "tasks_yaml": data["tasks_yaml"],
            "process": data.get("process") or "sequential",
            "model": data.get("model") or "",
            "config": data.get("config") or {},
        }
    crew = _get_or_400(Crew, org, data["crew_id"], "crew_id")
    return crew, {
        "name": crew.name,
        "agents_yaml": crew.agents_yaml,
        "tasks_yaml": crew.tasks_yaml,
        "process": data.get("process") or crew.process,
        "model": data.get("model") or crew.model,
        "config": crew.config or {},
    }


def _start_crew(org, actor, data: dict) -> Execution:
    """A crew run, checked first as a whole (its YAML, tools, agents and inputs)."""
    crew, definition = _crew_definition(org, data)
    services.crew_check(
        organization=org,
        agents_yaml=definition["agents_yaml"],
        tasks_yaml=definition["tasks_yaml"],
        process=definition["process"],
        config=definition["config"],
        inputs=data["inputs"],
    )
    run_name = data.get("run_name") or generated_run_name(
        agents_yaml=definition["agents_yaml"],
        tasks_yaml=definition["tasks_yaml"],
        crew_name=crew.name if crew else "",
    )
    return run_services.execution_create(
        organization=org,
        actor=actor,
        kind=ExecutionKind.CREW,
        crew=crew,
        run_name=run_name,
        definition=definition,
        model=definition["model"],
        max_attempts=data["max_attempts"],
        **_common(data),
    )


@extend_schema(tags=["executions"])
class ExecutionViewSet(TenantScopedViewSet):
    """Every run of the organization (crews, orchestrations, agent tasks/commands, workflow steps)."""

    model = Execution
    serializer_class = ExecutionSerializer
    http_method_names = ["get", "post", "head", "options"]
    filterset_class = ExecutionFilter

    def scope_queryset(self, queryset):
        return selectors.executions_for_list(queryset=queryset)

    @extend_schema(request=ExecutionCreateSerializer, responses={202: ExecutionCreatedSerializer})
    def create(self, request, *args, **kwargs):
        """Start a run of a crew (``crew_id``, or inline ``agents_yaml`` + ``tasks_yaml``), an
        orchestration or one agent. Answers at once with the PENDING execution."""
        data = validated(ExecutionCreateSerializer, request)
        if data.get("orchestration_id"):
            execution = _start_orchestration(self.organization, request.user, data)
        elif data.get("agent_id"):
            execution = _start_agent_task(self.organization, request.user, data)
        else:
            execution = _start_crew(self.organization, request.user, data)
        return Response(created_body(execution), status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        request=GenerateNameSerializer,
        responses={200: OpenApiResponse(response=OpenApiTypes.OBJECT, description="{name}")},
    )
    @action(detail=False, methods=["post"], url_path="generate-name")
    def generate_name(self, request):
        """A run name from the crew's agents and tasks."""
        data = validated(GenerateNameSerializer, request)
        crew_name, agents_yaml, tasks_yaml = "", data.get("agents_yaml", ""), data.get("tasks_yaml", "")
        if data.get("crew_id"):
            crew = _get_or_400(Crew, self.organization, data["crew_id"], "crew_id")
            crew_name, agents_yaml, tasks_yaml = crew.name, crew.agents_yaml, crew.tasks_yaml
        return Response(
            {"name": generated_run_name(agents_yaml=agents_yaml, tasks_yaml=tasks_yaml, crew_name=crew_name)}
        )

    @extend_schema(request=None, responses={200: ExecutionSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel: a PENDING run ends at once; a running one stops before its next token (within seconds)."""
        execution = run_services.execution_cancel(execution=self.get_object(), actor=request.user)
        return Response(ExecutionSerializer(execution).data)


def _get_or_400(model, organization, pk, field: str):
    """The organization's row (read once per batch of runs), or a 400 naming ``field``."""
    obj = run_services.batch_memo(
        (model._meta.label, str(pk)), lambda: model.objects.for_org(organization).filter(pk=pk).first()
    )
    if obj is None:
        raise exceptions.ValidationError({field: [f"No {model._meta.verbose_name} {pk} in this organization."]})
    obj.organization = organization  # the same row: no second read when the run names its organization
    return obj


@extend_schema(tags=["executions"])
class ExecutionHistoryViewSet(TenantScopedViewSet):
    """Execution history (seed 001): runs newest first; one run with its status timeline."""

    model = Execution
    serializer_class = ExecutionSerializer
    http_method_names = READ_ONLY
    filterset_class = ExecutionFilter

    def scope_queryset(self, queryset):
        if self.action == "retrieve":
            return queryset.prefetch_related("events")
        return selectors.executions_for_list(queryset=queryset)

    @extend_schema(responses={200: ExecutionHistorySerializer})
    def retrieve(self, request, *args, **kwargs):
        return Response(ExecutionHistorySerializer(self.get_object()).data)


@extend_schema(tags=["executions"])
class ExecutionLogViewSet(TenantScopedViewSet):
    """A run's logs in order (``seq``); ``?after=<seq>`` resumes, ``?limit=`` (≤ 1000), ``?level=``."""

    model = Execution
    serializer_class = ExecutionLogPageSerializer
    http_method_names = READ_ONLY

    @extend_schema(
        parameters=[
            OpenApiParameter("after", int),
            OpenApiParameter("limit", int),
            OpenApiParameter("level", str, enum=["debug", "info", "warning", "error"]),
        ],
        responses={200: ExecutionLogPageSerializer},
    )
    def retrieve(self, request, *args, **kwargs):
        execution = self.get_object()
        after = _int_param(request, "after", 0, minimum=0)
        limit = _int_param(request, "limit", 200, minimum=1, maximum=1000)
        level = request.query_params.get("level") or None
        rows = list(
            selectors.execution_logs(execution=execution, after=after, limit=limit + 1, level=level).values(
                "seq", "level", "message", "data", "created_at"
            )
        )
        has_more = len(rows) > limit
        rows = rows[:limit]
        total = execution.logs.filter(seq__gt=after).count() if has_more else len(rows)
        return Response(
            {
                "execution_id": execution.pk,
                "status": execution.status,
                "items": rows,
                "total": total,
                "limit": limit,
                "offset": 0,
                "has_more": has_more,
                "last_seq": rows[-1]["seq"] if rows else after,
            }
        )


def _int_param(request, name, default, *, minimum=None, maximum=None) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise exceptions.ValidationError({name: ["Must be an integer."]})
    if minimum is not None and value < minimum:
        raise exceptions.ValidationError({name: [f"Must be at least {minimum}."]})
    return min(value, maximum) if maximum is not None else value


def _trace_body(execution: Execution, spans: list[dict] | None = None) -> dict:
    body = {
        "id": execution.pk,
        "execution_id": execution.pk,
        "trace_id": execution.trace_id,
        "name": execution.run_name,
        "kind": execution.kind,
        "status": execution.status,
        "agent_id": execution.agent_id,
        "started_at": execution.started_at,
        "completed_at": execution.completed_at,
        "duration_ms": execution.duration_ms,
        "tokens_in": execution.tokens_in,
        "tokens_out": execution.tokens_out,
        "total_tokens": execution.total_tokens,
        "cost": execution.cost,
        "created_at": execution.created_at,
    }
    if spans is None:
        return TraceSerializer(body).data  # as documented: cost a decimal string, as on every other route
    body["spans"] = spans
    body["tree"] = selectors.span_tree(spans)
    return TraceDetailSerializer(body).data


def _spans_of(execution: Execution) -> list[dict]:
    return list(selectors.execution_spans(execution=execution).values(*SPAN_FIELDS))


class TraceFilter(ExecutionFilter):
    pass


@extend_schema(tags=["traces"])
class ExecutionTraceViewSet(TenantScopedViewSet):
    """One run's trace (seed 001 ``execution-trace/{id}``): spans (task/agent/llm/tool) with parents,
    timings, tokens and cost, flat and as a tree."""

    model = Execution
    serializer_class = TraceDetailSerializer
    http_method_names = READ_ONLY

    @extend_schema(responses={200: TraceDetailSerializer})
    def retrieve(self, request, *args, **kwargs):
        execution = self.get_object()
        return Response(_trace_body(execution, _spans_of(execution)))


@extend_schema(tags=["traces"])
class TraceViewSet(TenantScopedViewSet):
    """Traces (seed 003): one per run, found by ``trace_id``; filters agent_id, start_date, end_date."""

    model = Execution
    serializer_class = TraceSerializer
    http_method_names = READ_ONLY
    filterset_class = TraceFilter
    lookup_field = "trace_id"
    lookup_value_regex = "[0-9a-fA-F]{32}"

    def scope_queryset(self, queryset):
        return queryset.order_by("-created_at", "id")

    def list(self, request, *args, **kwargs):
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        if page is None:  # no pagination: the whole list (as DRF's list)
            return Response([_trace_body(e) for e in queryset])
        return self.get_paginated_response([_trace_body(e) for e in page])

    @extend_schema(responses={200: TraceDetailSerializer})
    def retrieve(self, request, *args, **kwargs):
        execution = self.get_object()
        return Response(_trace_body(execution, _spans_of(execution)))


# --- tasks/{id}/status -------------------------------------------------------------------------


def _task_status_body(execution: Execution) -> dict:
    return {
        "task_id": execution.pk,
        "execution_id": execution.pk,
        "kind": execution.kind,
        "status": execution.status,
        "result": execution.result,
        "error": execution.error,
        "agent_id": execution.agent_id,
        "created_at": execution.created_at,
        "started_at": execution.started_at,
        "completed_at": execution.completed_at,
        "tokens_in": execution.tokens_in,
        "tokens_out": execution.tokens_out,
        "cost": execution.cost,
    }


@extend_schema(tags=["tasks"])
class TaskStatusViewSet(TenantScopedViewSet):
    """``tasks/{task_id}/status`` (seed 000): the status of an agent task run."""

    model = Execution
    serializer_class = TaskStatusSerializer
    http_method_names = READ_ONLY

    @extend_schema(responses={200: TaskStatusSerializer})
    def retrieve(self, request, *args, **kwargs):
        return Response(TaskStatusSerializer(_task_status_body(self.get_object())).data)


# --- agent entry points ------------------------------------------------------------------------
