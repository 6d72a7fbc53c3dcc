"""Thin views over apps.crews.services / selectors."""
from __future__ import annotations

import time
import uuid

import django_filters
import orjson
from django.conf import settings
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.decorators import action
from rest_framework.renderers import BaseRenderer
from rest_framework.response import Response

from apps.agents import calls
from apps.agents.models import Agent
from apps.crews import generation, selectors, services, specs
from apps.crews.models import Crew, Orchestration, TaskDefinition
from apps.crews.serializers import (
    SPAN_FIELDS,
    AgentCommandAcceptedSerializer,
    AgentCommandSerializer,
    AgentExecuteResponseSerializer,
    AgentExecuteSerializer,
    AgentTaskAcceptedSerializer,
    AgentTaskSerializer,
    CrewDebugResultSerializer,
    CrewDebugSerializer,
    CrewExportSerializer,
    CrewImportSerializer,
    CrewSerializer,
    ExecutionCreatedSerializer,
    ExecutionCreateSerializer,
    ExecutionHistorySerializer,
    ExecutionLogPageSerializer,
    ExecutionSerializer,
    GeneratedAgentSerializer,
    GeneratedCrewSerializer,
    GeneratedTaskSerializer,
    GenerateNameSerializer,
    GenerationRequestSerializer,
    OrchestrationExecuteSerializer,
    OrchestrationResultSerializer,
    OrchestrationSerializer,
    RuntimeAgentSerializer,
    RuntimeStatusSerializer,
    StreamPromptSerializer,
    TaskDefinitionSerializer,
    TaskStatusSerializer,
    TraceDetailSerializer,
    TraceSerializer,
    UsageSerializer,
)
from apps.runs import services as run_services
from apps.runs.models import ACTIVE_STATUSES, Execution, ExecutionKind, ExecutionStatus
from kai_platform.api.errors import Conflict
from kai_platform.api.filters import IsoDateTimeFilter
from kai_platform.api.renderers import KaiJSONRenderer, dumps
from kai_platform.api.serializers import validated
from kai_platform.api.views import KaiAPIView
from kai_platform.tenancy.roles import HUMAN_ROLES
from kai_platform.tenancy.viewsets import READ_ONLY, TenantScopedViewSet

WRITE_ACTIONS = ("create", "update", "partial_update", "destroy")
HUMAN_WRITES = {name: HUMAN_ROLES for name in WRITE_ACTIONS}


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

@extend_schema(tags=["crews"])
class CrewViewSet(TenantScopedViewSet):
    """Crews: agents and tasks in CrewAI's YAML format (seed 001). PUT takes partial bodies."""

    model = Crew
    serializer_class = CrewSerializer
    filterset_fields = ["process"]
    action_roles = {**HUMAN_WRITES, "import_crew": HUMAN_ROLES}

    def perform_create(self, serializer):
        serializer.instance = services.crew_create(organization=self.organization, actor=self.request.user,
                                                   data=serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = services.crew_update(crew=serializer.instance, actor=self.request.user,
                                                   data=serializer.validated_data)

    def perform_destroy(self, instance):
        services.crew_delete(crew=instance, actor=self.request.user)

    @extend_schema(request=CrewDebugSerializer, responses={200: CrewDebugResultSerializer})
    @action(detail=False, methods=["post"], url_path="debug")
    def debug(self, request):
        """Validate agents_yaml and tasks_yaml: every problem with its line (200 either way)."""
        data = validated(CrewDebugSerializer, request)
        spec = services.crew_validate(agents_yaml=data["agents_yaml"], tasks_yaml=data["tasks_yaml"],
                                      process=data["process"])
        return Response({"valid": spec.valid, "errors": [e.as_dict() for e in spec.errors],
                         "agents": [a.as_dict() for a in spec.agents], "tasks": [t.as_dict() for t in spec.tasks],
                         "placeholders": spec.placeholders})

    @extend_schema(request=CrewImportSerializer, responses={201: CrewSerializer})
    @action(detail=False, methods=["post"], url_path="import")
    def import_crew(self, request):
        """Create a crew from CrewAI YAML: ``crew_yaml`` (the export document) or agents_yaml + tasks_yaml."""
        data = validated(CrewImportSerializer, request)
        crew = services.crew_import(organization=self.organization, actor=request.user, data=data)
        return Response(CrewSerializer(crew).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: CrewExportSerializer})
    @action(detail=True, methods=["get"])
    def export(self, request, pk=None):
        """The crew as CrewAI's agents.yaml and tasks.yaml, and as one document for crews/import."""
        return Response(services.crew_export(crew=self.get_object()))


# --- task definitions --------------------------------------------------------------------------

@extend_schema(tags=["tasks"])
class TaskDefinitionViewSet(TenantScopedViewSet):
    """Task definitions (seed 001 ``/tasks``). ``PUT {id}`` is partial; ``PUT {id}/full`` replaces."""

    model = TaskDefinition
    serializer_class = TaskDefinitionSerializer
    filterset_fields = ["agent"]
    action_roles = {**HUMAN_WRITES, "full": HUMAN_ROLES}

    def perform_create(self, serializer):
        serializer.instance = services.task_definition_create(organization=self.organization, actor=self.request.user,
                                                              data=serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = services.task_definition_update(task=serializer.instance, actor=self.request.user,
                                                              data=serializer.validated_data)

    def perform_destroy(self, instance):
        services.task_definition_delete(task=instance, actor=self.request.user)

    @extend_schema(request=TaskDefinitionSerializer, responses={200: TaskDefinitionSerializer})
    @action(detail=True, methods=["put"])
    def full(self, request, pk=None):
        """Replace the whole task: name and description are required; omitted fields reset."""
        task = self.get_object()
        serializer = TaskDefinitionSerializer(task, data=request.data)
        serializer.is_valid(raise_exception=True)
        task = services.task_definition_update(task=task, actor=request.user, data=serializer.validated_data,
                                               replace=True)
        return Response(TaskDefinitionSerializer(task).data)


# --- orchestrations ----------------------------------------------------------------------------

@extend_schema(tags=["orchestrations"])
class OrchestrationViewSet(TenantScopedViewSet):
    """Multi-agent orchestrations (seed 003) over the organization's agents."""

    model = Orchestration
    serializer_class = OrchestrationSerializer
    filterset_fields = ["pattern", "status"]
    action_roles = HUMAN_WRITES

    def perform_create(self, serializer):
        serializer.instance = services.orchestration_create(organization=self.organization, actor=self.request.user,
                                                            data=serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = services.orchestration_update(orchestration=serializer.instance, actor=self.request.user,
                                                            data=serializer.validated_data)

    def perform_destroy(self, instance):
        services.orchestration_delete(orchestration=instance, actor=self.request.user)

    @extend_schema(request=OrchestrationExecuteSerializer,
                   responses={200: OrchestrationResultSerializer, 202: ExecutionCreatedSerializer})
    @action(detail=True, methods=["post"])
    def execute(self, request, pk=None):
        """Run it on a worker. By default waits (up to ``timeout_ms``) and answers
        ``{output, trace_id, agents_executed, total_cost}``; with ``wait_for_completion: false`` (or
        when the wait times out) answers 202 with the execution id."""
        orchestration = self.get_object()
        data = validated(OrchestrationExecuteSerializer, request)
        inputs = data.get("inputs") if data.get("inputs") is not None else data["input_data"]
        execution = services.orchestration_start(orchestration=orchestration, actor=request.user, inputs=inputs,
                                                 params=data["params"], priority=data["priority"])
        if data["wait_for_completion"]:
            execution = run_services.wait_for_terminal(execution_id=execution.pk, timeout=data["timeout_ms"] / 1000)
        if not execution.is_terminal:
            return Response(_created_body(execution, "Orchestration started"), status=status.HTTP_202_ACCEPTED)
        result = execution.result if isinstance(execution.result, dict) else {}
        return Response({"execution_id": execution.pk, "status": execution.status,
                         "output": result.get("output"), "outputs": result.get("outputs") or {},
                         "trace_id": execution.trace_id, "agents_executed": result.get("agents_executed") or [],
                         "total_cost": execution.cost, "error": execution.error})


# --- executions --------------------------------------------------------------------------------

def _created_body(execution: Execution, message: str = "Execution started successfully") -> dict:
    return {"execution_id": execution.pk, "status": execution.status, "message": message,
            "run_name": execution.run_name, "trace_id": execution.trace_id}


def generated_run_name(*, agents_yaml: str = "", tasks_yaml: str = "", crew_name: str = "") -> str:
    spec = specs.parse_crew(agents_yaml or "", tasks_yaml or "") if (agents_yaml or tasks_yaml) else None
    lead = crew_name or (spec.agents[0].role if spec and spec.agents else "") or "Run"
    task = spec.tasks[0].key.replace("_", " ").title() if spec and spec.tasks else ""
    stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    return " - ".join(p for p in (lead.strip()[:120], task[:80], stamp) if p)


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
        org = self.organization
        common = {"inputs": data["inputs"], "params": data["params"], "priority": data["priority"]}
        if data.get("orchestration_id"):
            orchestration = _get_or_400(Orchestration, org, data["orchestration_id"], "orchestration_id")
            execution = services.orchestration_start(orchestration=orchestration, actor=request.user, **common)
            return Response(_created_body(execution), status=status.HTTP_202_ACCEPTED)
        if data.get("agent_id"):
            agent = _get_or_400(Agent, org, data["agent_id"], "agent_id")
            execution = calls.agent_call_start(
                actor=request.user, kind=ExecutionKind.AGENT_TASK, agent=agent,
                run_name=data.get("run_name") or f"{agent.name} - {data['description'][:60]}",
                definition={"description": data["description"], "expected_output": data.get("expected_output", "")},
                model=data.get("model") or "", max_attempts=data["max_attempts"], **common)
            return Response(_created_body(execution), status=status.HTTP_202_ACCEPTED)
        crew = None
        if data.get("crew_id"):
            crew = _get_or_400(Crew, org, data["crew_id"], "crew_id")
            definition = {"name": crew.name, "agents_yaml": crew.agents_yaml, "tasks_yaml": crew.tasks_yaml,
                          "process": data.get("process") or crew.process, "model": data.get("model") or crew.model}
        else:
            definition = {"name": data.get("run_name") or "", "agents_yaml": data["agents_yaml"],
                          "tasks_yaml": data["tasks_yaml"], "process": data.get("process") or "sequential",
                          "model": data.get("model") or ""}
        spec = services.crew_validate(agents_yaml=definition["agents_yaml"], tasks_yaml=definition["tasks_yaml"],
                                      process=definition["process"])
        services._raise_spec_errors(spec)
        run_name = data.get("run_name") or generated_run_name(
            agents_yaml=definition["agents_yaml"], tasks_yaml=definition["tasks_yaml"],
            crew_name=crew.name if crew else "")
        execution = run_services.execution_create(organization=org, actor=request.user, kind=ExecutionKind.CREW, crew=crew,
                                              run_name=run_name, definition=definition, model=definition["model"],
                                              max_attempts=data["max_attempts"], **common)
        return Response(_created_body(execution), status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=GenerateNameSerializer,
                   responses={200: OpenApiResponse(response=OpenApiTypes.OBJECT, description="{name}")})
    @action(detail=False, methods=["post"], url_path="generate-name")
    def generate_name(self, request):
        """A run name from the crew's agents and tasks."""
        data = validated(GenerateNameSerializer, request)
        crew_name, agents_yaml, tasks_yaml = "", data.get("agents_yaml", ""), data.get("tasks_yaml", "")
        if data.get("crew_id"):
            crew = _get_or_400(Crew, self.organization, data["crew_id"], "crew_id")
            crew_name, agents_yaml, tasks_yaml = crew.name, crew.agents_yaml, crew.tasks_yaml
        return Response({"name": generated_run_name(agents_yaml=agents_yaml, tasks_yaml=tasks_yaml,
                                                    crew_name=crew_name)})

    @extend_schema(request=None, responses={200: ExecutionSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel: a PENDING run ends at once; a running one stops before its next token (within seconds)."""
        execution = run_services.execution_cancel(execution=self.get_object(), actor=request.user)
        return Response(ExecutionSerializer(execution).data)


def _get_or_400(model, organization, pk, field: str):
    obj = model.objects.for_org(organization).filter(pk=pk).first()
    if obj is None:
        raise exceptions.ValidationError({field: [f"No {model._meta.verbose_name} {pk} in this organization."]})
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

    @extend_schema(parameters=[OpenApiParameter("after", int), OpenApiParameter("limit", int),
                               OpenApiParameter("level", str, enum=["debug", "info", "warning", "error"])],
                   responses={200: ExecutionLogPageSerializer})
    def retrieve(self, request, *args, **kwargs):
        execution = self.get_object()
        after = _int_param(request, "after", 0, minimum=0)
        limit = _int_param(request, "limit", 200, minimum=1, maximum=1000)
        level = request.query_params.get("level") or None
        rows = list(selectors.execution_logs(execution=execution, after=after, limit=limit + 1, level=level)
                    .values("seq", "level", "message", "data", "created_at"))
        has_more = len(rows) > limit
        rows = rows[:limit]
        total = execution.logs.filter(seq__gt=after).count() if has_more else len(rows)
        return Response({"execution_id": execution.pk, "status": execution.status, "items": rows, "total": total,
                         "limit": limit, "offset": 0, "has_more": has_more,
                         "last_seq": rows[-1]["seq"] if rows else after})


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
    body = {"id": execution.pk, "execution_id": execution.pk, "trace_id": execution.trace_id,
            "name": execution.run_name, "kind": execution.kind, "status": execution.status,
            "agent_id": execution.agent_id, "started_at": execution.started_at,
            "completed_at": execution.completed_at, "duration_ms": execution.duration_ms,
            "tokens_in": execution.tokens_in, "tokens_out": execution.tokens_out,
            "total_tokens": execution.total_tokens, "cost": execution.cost, "created_at": execution.created_at}
    if spans is not None:
        body["spans"] = spans
        body["tree"] = selectors.span_tree(spans)
    return body


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
        return self.get_paginated_response([_trace_body(e) for e in page])

    @extend_schema(responses={200: TraceDetailSerializer})
    def retrieve(self, request, *args, **kwargs):
        execution = self.get_object()
        return Response(_trace_body(execution, _spans_of(execution)))


# --- tasks/{id}/status -------------------------------------------------------------------------

def _task_status_body(execution: Execution) -> dict:
    return {"task_id": execution.pk, "execution_id": execution.pk, "kind": execution.kind,
            "status": execution.status, "result": execution.result, "error": execution.error,
            "agent_id": execution.agent_id, "created_at": execution.created_at, "started_at": execution.started_at,
            "completed_at": execution.completed_at, "tokens_in": execution.tokens_in,
            "tokens_out": execution.tokens_out, "cost": execution.cost}


@extend_schema(tags=["tasks"])
class TaskStatusViewSet(TenantScopedViewSet):
    """``tasks/{task_id}/status`` (seed 000): the status of an agent task run."""

    model = Execution
    serializer_class = TaskStatusSerializer
    http_method_names = READ_ONLY

    @extend_schema(responses={200: TaskStatusSerializer})
    def retrieve(self, request, *args, **kwargs):
        return Response(_task_status_body(self.get_object()))


# --- agent entry points ------------------------------------------------------------------------

class EventStreamRenderer(BaseRenderer):
    """``text/event-stream``: the stream itself is a StreamingHttpResponse; errors render as one event."""

    media_type = "text/event-stream"
    format = "sse"
    charset = None

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None:
            return b""
        return b"event: error\ndata: " + dumps(data) + b"\n\n"


class AgentRunViewSet(TenantScopedViewSet):
    """Runs of one agent: task (seed 000), command (seed 000), execute (seed 002), stream-prompt (SSE)."""

    model = Agent
    serializer_class = AgentTaskSerializer
    http_method_names = ["post", "options"]
    renderer_classes = [KaiJSONRenderer, EventStreamRenderer]

    def get_renderers(self):
        """Only stream-prompt answers server-sent events; the other runs answer JSON."""
        if getattr(self, "action", None) != "stream_prompt":
            return [KaiJSONRenderer()]
        return super().get_renderers()

    @extend_schema(tags=["agents"], request=AgentTaskSerializer, responses={202: AgentTaskAcceptedSerializer})
    def task(self, request, pk=None):
        """Queue a task for the agent; its status is at ``tasks/{task_id}/status``."""
        agent = self.get_object()
        data = validated(AgentTaskSerializer, request)
        execution = calls.agent_call_start(
            actor=request.user, kind=ExecutionKind.AGENT_TASK, agent=agent,
            run_name=f"{agent.name} - {data.get('name') or data['description'][:60]}",
            definition={"name": data.get("name") or "task", "description": data["description"],
                        "expected_output": data["expected_output"]},
            inputs=data["inputs"], params=data["params"], model=data.get("model") or "", priority=data["priority"])
        return Response({"task_id": execution.pk, "execution_id": execution.pk, "status": execution.status},
                        status=status.HTTP_202_ACCEPTED)

    @extend_schema(tags=["agents"], request=AgentCommandSerializer, responses={202: AgentCommandAcceptedSerializer})
    def command(self, request, pk=None):
        """Send the agent a command (seed 000 ``{command, params}``); it runs on a worker. Its output
        streams under ``stream_id`` and the result is the execution's."""
        agent = self.get_object()
        data = validated(AgentCommandSerializer, request)
        stream_id = uuid.uuid4().hex
        execution = calls.agent_call_start(
            actor=request.user, kind=ExecutionKind.AGENT_COMMAND, agent=agent,
            run_name=f"{agent.name} - {data['command']}", definition={"command": data["command"],
                                                                      "params": data["params"]},
            params=data["llm_params"], model=data.get("model") or "", priority=data["priority"], stream_id=stream_id)
        return Response({"execution_id": execution.pk, "stream_id": stream_id, "command": data["command"],
                         "status": execution.status}, status=status.HTTP_202_ACCEPTED)

    @extend_schema(tags=["agents"], request=AgentExecuteSerializer,
                   responses={200: AgentExecuteResponseSerializer, 202: AgentExecuteResponseSerializer})
    def execute(self, request, pk=None):
        """Seed 002: run an ``AgentCommand``; with ``wait_for_completion`` the ``AgentResponse`` comes back
        in ``data.result`` (else poll ``executions/{execution_id}``)."""
        agent = self.get_object()
        data = validated(AgentExecuteSerializer, request)
        command = data["command"]
        execution = calls.agent_call_start(
            actor=request.user, kind=ExecutionKind.AGENT_EXECUTE, agent=agent,
            run_name=f"{agent.name} - {command['action']}",
            definition={"action": command["action"], "parameters": command["parameters"],
                        "context": command["context"], "user_id": command.get("user_id") or str(request.user.pk),
                        "request_id": command.get("request_id") or getattr(request, "request_id", ""),
                        "voice_input": command["voice_input"]},
            params=data["params"], priority=run_services.PRIORITY_NAMES[command["priority"]])
        if data["wait_for_completion"]:
            execution = run_services.wait_for_terminal(execution_id=execution.pk, timeout=data["timeout_ms"] / 1000)
        body = {"execution_id": execution.pk, "status": execution.status}
        if execution.status == ExecutionStatus.COMPLETED and isinstance(execution.result, dict):
            body["result"] = execution.result
        elif execution.is_terminal:
            body["result"] = {"success": False, "data": None, "error": execution.error or execution.status.lower(),
                              "metadata": {"execution_time": execution.duration_ms or 0, "resources_used": [],
                                           "next_suggested_actions": [], "workflow_triggered": []}}
        success = execution.status not in (ExecutionStatus.FAILED, ExecutionStatus.CANCELLED)
        return Response({"success": success, "data": body},
                        status=status.HTTP_200_OK if execution.is_terminal else status.HTTP_202_ACCEPTED)

    @extend_schema(tags=["agents"], request=StreamPromptSerializer,
                   responses={(200, "text/event-stream"): OpenApiResponse(
                       response=OpenApiTypes.STR, description="Server-sent events: start, stream_chunk…, done"),
                       202: AgentCommandAcceptedSerializer})
    def stream_prompt(self, request, pk=None):
        """Stream the agent's answer as server-sent events (``text/event-stream``): a ``start`` event,
        one ``stream_chunk`` per token (``{type, stream_id, chunk, done}``) and a final ``done: true``.
        The same chunks are readable by ``stream_id`` from the agent's socket."""
        agent = self.get_object()
        data = validated(StreamPromptSerializer, request)
        stream_id = data.get("stream_id") or uuid.uuid4().hex
        if data.get("stream_id"):
            _claim_stream_id(stream_id)
        execution = calls.agent_call_start(
            actor=request.user, kind=ExecutionKind.AGENT_PROMPT, agent=agent,
            run_name=f"{agent.name} - prompt", definition={"prompt": data["prompt"]}, params=data["params"],
            model=data.get("model") or "", priority=8, stream_id=stream_id)
        if not data["stream"]:
            return Response({"execution_id": execution.pk, "stream_id": stream_id, "command": "stream-prompt",
                             "status": execution.status}, status=status.HTTP_202_ACCEPTED)
        response = StreamingHttpResponse(sse_events(execution_id=str(execution.pk), stream_id=stream_id),
                                         content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        response["X-Stream-ID"] = stream_id
        response["X-Execution-ID"] = str(execution.pk)
        return response


def _claim_stream_id(stream_id: str) -> None:
    """A client-chosen stream id names one run only (it keys the run's Redis stream)."""
    from django_redis import get_redis_connection

    from apps.runs.streams import stream_key

    if Execution.objects.filter(stream_id=stream_id).exists():
        raise Conflict(f"stream_id {stream_id!r} is already used; omit it to get a fresh one.",
                       errors=[{"field": "stream_id", "message": "already used"}])
    get_redis_connection("default").delete(stream_key(stream_id))  # a leftover of a deleted run


SSE_KEEPALIVE_SECONDS = 15
SSE_BLOCK_MS = 1000
SSE_MAX_SECONDS = 900


def _sse(payload: dict, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(payload) + b"\n\n"


def sse_events(*, execution_id: str, stream_id: str):
    """Read the run's Redis stream from the start (nothing is missed however late the reader comes)."""
    from django.db import connection
    from django_redis import get_redis_connection

    from apps.runs.streams import stream_key

    connection.close()  # the stream may last minutes: no database connection held meanwhile
    yield _sse({"type": "start", "stream_id": stream_id, "execution_id": execution_id}, event="start")
    redis = get_redis_connection("default")
    key = stream_key(stream_id)
    last_id = "0-0"
    deadline = time.monotonic() + SSE_MAX_SECONDS
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        # block less than the Redis client's socket timeout (KAI_REDIS_TIMEOUT)
        entries = redis.xread({key: last_id}, count=200, block=SSE_BLOCK_MS)
        if not entries:
            if time.monotonic() - quiet_since >= SSE_KEEPALIVE_SECONDS:
                quiet_since = time.monotonic()
                yield b": keepalive\n\n"
            continue
        quiet_since = time.monotonic()
        for _key, items in entries:
            for entry_id, fields in items:
                last_id = entry_id
                fields = {k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
                          for k, v in fields.items()}
                if fields.get("done"):
                    yield _sse({"type": "stream_chunk", "stream_id": stream_id, "chunk": "", "done": True,
                                "status": fields.get("status"), "error": fields.get("error") or None,
                                "execution_id": execution_id})
                    return
                yield _sse({"type": "stream_chunk", "stream_id": stream_id, "chunk": fields.get("chunk", ""),
                            "done": False})
    yield _sse({"type": "stream_chunk", "stream_id": stream_id, "chunk": "", "done": True, "status": "TIMEOUT",
                "execution_id": execution_id})


# --- generation --------------------------------------------------------------------------------

class _GenerationView(KaiAPIView):
    kind = ""
    action_roles = {"post": HUMAN_ROLES}

    def post(self, request):
        data = validated(GenerationRequestSerializer, request)
        value = generation.generate(organization=self.organization, kind=self.kind, description=data["description"],
                                    model=data.get("model") or "", process=data.get("process") or "sequential")
        return Response(self.body(value))

    def body(self, value):
        return {self.kind: value}


@extend_schema(tags=["generation"])
class AgentGenerationView(_GenerationView):
    """An agent (name, role, goal, backstory, tools) from a description."""

    kind = "agent"

    @extend_schema(request=GenerationRequestSerializer, responses={200: GeneratedAgentSerializer})
    def post(self, request):
        return super().post(request)


@extend_schema(tags=["generation"])
class TaskGenerationView(_GenerationView):
    """A task (name, description, expected_output, tools) from a description."""

    kind = "task"

    @extend_schema(request=GenerationRequestSerializer, responses={200: GeneratedTaskSerializer})
    def post(self, request):
        return super().post(request)


@extend_schema(tags=["generation"])
class CrewGenerationView(_GenerationView):
    """A crew (agents_yaml/tasks_yaml in CrewAI's format, valid for crews and executions) from a description."""

    kind = "crew"

    @extend_schema(request=GenerationRequestSerializer, responses={200: GeneratedCrewSerializer})
    def post(self, request):
        return super().post(request)

    def body(self, value):
        agents = [{"key": key, **spec} for key, spec in value["agents"].items()]
        tasks = [{"key": key, **spec} for key, spec in value["tasks"].items()]
        return {"crew": generation.crew_fields(value), "agents": agents, "tasks": tasks}


# --- usage & runtime ---------------------------------------------------------------------------

def _usage_period(request) -> str | None:
    """``?period=``: one of the documented periods (absent: the default)."""
    period = request.query_params.get("period")
    if period is not None and period not in selectors.PERIOD_DAYS:
        raise exceptions.ValidationError({"period": [f"One of: {', '.join(selectors.PERIOD_DAYS)}."]})
    return period


@extend_schema(tags=["runtime"])
class UsageView(KaiAPIView):
    """Organization usage (seed 003): totals, by agent, by day and by model over ``?period=``."""

    @extend_schema(parameters=[OpenApiParameter("period", str, enum=list(selectors.PERIOD_DAYS))],
                   responses={200: UsageSerializer})
    def get(self, request):
        body = selectors.usage_summary(organization=self.organization, period=_usage_period(request))
        return Response(UsageSerializer(body).data)


@extend_schema(tags=["runtime"])
class AgentUsageViewSet(TenantScopedViewSet):
    """One agent's usage (seed 003 ``usage/agents/{id}``)."""

    model = Agent
    serializer_class = UsageSerializer
    http_method_names = READ_ONLY

    @extend_schema(parameters=[OpenApiParameter("period", str, enum=list(selectors.PERIOD_DAYS))],
                   responses={200: UsageSerializer})
    def retrieve(self, request, *args, **kwargs):
        agent = self.get_object()
        body = selectors.usage_summary(organization=self.organization, period=_usage_period(request),
                                       agent_id=agent.pk)
        return Response({"agent_id": agent.pk, "agent_name": agent.name, **UsageSerializer(body).data})


def _live_workers() -> list[str]:
    from django_redis import get_redis_connection

    from kai_platform.celery import worker_key_pattern

    try:
        marker = ":workers:"
        keys = get_redis_connection("default").scan_iter(worker_key_pattern())
        return sorted(key.decode().split(marker, 1)[-1] for key in keys)  # node name (and pid)
    except Exception:
        return []


def _queue_depths() -> dict:
    from kai_platform.celery import app

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
        from apps.agents.models import Provider
        from apps.runs import llm as llm_layer
        from apps.runs.runner import concurrency_cap

        org = self.organization
        data = selectors.runtime_status(organization=org)
        providers = list(Provider.objects.for_org(org).filter(is_active=True).values("pk", "name", "provider_type"))
        breakers = [{"provider_id": p["pk"], "name": p["name"], "provider_type": p["provider_type"],
                     **llm_layer.breaker_state(str(p["pk"]))} for p in providers]
        healthy = data["agents"]["active"] - data["agents"]["errored"]
        return Response({
            "active_agents": data["busy_agents"], "pending_tasks": data["counts"]["pending"],
            "healthy_count": max(0, healthy), "total_agents": data["agents"]["total"],
            "running_executions": data["counts"]["running"], "pending_executions": data["counts"]["pending"],
            "concurrency_limit": concurrency_cap(org), "workers": _live_workers(), "queues": _queue_depths(),
            "circuit_breakers": breakers,
        })


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
        from django.db.models import Count

        from apps.agents.selectors import heartbeats
        from apps.runs import llm as llm_layer

        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        ids = [a.pk for a in page]
        beats = heartbeats(kind="agent", ids=ids)
        running = dict(Execution.objects.for_org(self.organization).filter(agent_id__in=ids, status__in=ACTIVE_STATUSES)
                       .values("agent_id").annotate(n=Count("id")).values_list("agent_id", "n"))
        spent = selectors.agent_month_costs(organization=self.organization, agent_ids=ids)
        resolved_cache: dict = {}
        items = []
        for agent in page:
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
            items.append({
                "id": agent.pk, "name": agent.name, "status": agent.status,
                "last_heartbeat": beats.get(str(agent.pk)) or agent.last_heartbeat,
                "running_executions": running.get(agent.pk, 0),
                "circuit_breaker_state": llm_layer.breaker_state(resolved.provider_key)["state"] if resolved else "unknown",
                "provider": (provider.name if provider else (resolved.provider_type if resolved else None)),
                "budget_used": used, "budget_limit": limit,
            })
        return self.get_paginated_response(RuntimeAgentSerializer(items, many=True).data)  # decimals as the schema says


