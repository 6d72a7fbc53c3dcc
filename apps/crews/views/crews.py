"""Crew, task-definition, orchestration and generation views (CrewAI YAML, seed 001/003)."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.crews import generation, services
from apps.crews.models import Crew, Orchestration, TaskDefinition
from apps.crews.serializers import (
    CrewDebugResultSerializer,
    CrewDebugSerializer,
    CrewExportSerializer,
    CrewImportSerializer,
    CrewSerializer,
    ExecutionCreatedSerializer,
    GeneratedAgentSerializer,
    GeneratedCrewSerializer,
    GeneratedTaskSerializer,
    GenerationRequestSerializer,
    OrchestrationExecuteSerializer,
    OrchestrationResultSerializer,
    OrchestrationSerializer,
    TaskDefinitionSerializer,
)
from apps.crews.views.executions import created_body
from apps.runs import services as run_services
from kai_platform.api.serializers import validated
from kai_platform.api.views import KaiAPIView
from kai_platform.tenancy.roles import HUMAN_ROLES
from kai_platform.tenancy.viewsets import TenantScopedViewSet

WRITE_ACTIONS = ("create", "update", "partial_update", "destroy")
HUMAN_WRITES = {name: HUMAN_ROLES for name in WRITE_ACTIONS}
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
                                      process=data["process"], config=data.get("config"))
        errors = [e.as_dict() for e in spec.errors]
        if spec.valid:
            problems = services.crew_organization_problems(organization=self.organization, spec=spec)
            errors += [{"field": f, "line": None, "message": m} for f, messages in problems.items() for m in messages]
        missing = spec.missing_inputs(data["inputs"]) if data.get("inputs") is not None else spec.placeholders
        if data.get("inputs") is not None and missing:
            errors.append({"field": "inputs", "line": None, "message": services.missing_inputs_message(missing)})
        return Response({"valid": not errors, "errors": errors, "agents": [a.as_dict() for a in spec.agents],
                         "tasks": [t.as_dict() for t in spec.tasks], "placeholders": spec.placeholders,
                         "missing_inputs": missing})

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
            return Response(created_body(execution, "Orchestration started"), status=status.HTTP_202_ACCEPTED)
        result = execution.result if isinstance(execution.result, dict) else {}
        return Response({"execution_id": execution.pk, "status": execution.status,
                         "output": result.get("output"), "outputs": result.get("outputs") or {},
                         "trace_id": execution.trace_id, "agents_executed": result.get("agents_executed") or [],
                         "total_cost": execution.cost, "error": execution.error})


# --- executions --------------------------------------------------------------------------------

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
