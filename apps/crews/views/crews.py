"""Crew, task-definition, orchestration and generation views (CrewAI YAML, seed 001/003)."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.decorators import action
from rest_framework.parsers import MultiPartParser
from rest_framework.renderers import BaseRenderer
from rest_framework.response import Response

from apps.crews import generation, services
from apps.crews.models import Crew, Orchestration, TaskDefinition
from apps.crews.projects import MAX_ARCHIVE_BYTES, slug
from apps.crews.serializers import (
    CrewDebugResultSerializer,
    CrewDebugSerializer,
    CrewExportSerializer,
    CrewImportResultSerializer,
    CrewImportSerializer,
    CrewProjectImportSerializer,
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
from kai_platform.api.parsers import KaiJSONParser
from kai_platform.api.renderers import KaiJSONRenderer
from kai_platform.api.serializers import validated
from kai_platform.api.views import KaiAPIView
from kai_platform.tenancy.roles import HUMAN_ROLES
from kai_platform.tenancy.viewsets import TenantScopedViewSet

WRITE_ACTIONS = ("create", "update", "partial_update", "destroy")
HUMAN_WRITES = {name: HUMAN_ROLES for name in WRITE_ACTIONS}


class ZipRenderer(BaseRenderer):
    """``application/zip``: the export writes its archive itself; this renderer only lets clients ask for it."""

    media_type = "application/zip"
    format = "zip"
    charset = None

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data if isinstance(data, bytes) else KaiJSONRenderer().render(data)


@extend_schema(tags=["crews"])
class CrewViewSet(TenantScopedViewSet):
    """Crews: agents and tasks in CrewAI's YAML format (seed 001). PUT takes partial bodies."""

    model = Crew
    serializer_class = CrewSerializer
    filterset_fields = ["process"]
    action_roles = {**HUMAN_WRITES, "import_crew": HUMAN_ROLES}

    def perform_create(self, serializer):
        serializer.instance = services.crew_create(
            organization=self.organization, actor=self.request.user, data=serializer.validated_data
        )

    def perform_update(self, serializer):
        serializer.instance = services.crew_update(
            crew=serializer.instance, actor=self.request.user, data=serializer.validated_data
        )

    def perform_destroy(self, instance):
        services.crew_delete(crew=instance, actor=self.request.user)

    @extend_schema(request=CrewDebugSerializer, responses={200: CrewDebugResultSerializer})
    @action(detail=False, methods=["post"], url_path="debug")
    def debug(self, request):
        """Validate agents_yaml and tasks_yaml: every problem with its line (200 either way)."""
        data = validated(CrewDebugSerializer, request)
        spec = services.crew_validate(
            agents_yaml=data["agents_yaml"],
            tasks_yaml=data["tasks_yaml"],
            process=data["process"],
            config=data.get("config"),
        )
        errors = [e.as_dict() for e in spec.errors]
        if spec.valid:
            problems = services.crew_organization_problems(organization=self.organization, spec=spec)
            errors += [{"field": f, "line": None, "message": m} for f, messages in problems.items() for m in messages]
        missing = spec.missing_inputs(data["inputs"]) if data.get("inputs") is not None else spec.placeholders
        if data.get("inputs") is not None and missing:
            errors.append({"field": "inputs", "line": None, "message": services.missing_inputs_message(missing)})
        return Response(
            {
                "valid": not errors,
                "errors": errors,
                "agents": [a.as_dict() for a in spec.agents],
                "tasks": [t.as_dict() for t in spec.tasks],
                "placeholders": spec.placeholders,
                "missing_inputs": missing,
            }
        )

    @extend_schema(
        request={"application/json": CrewImportSerializer, "multipart/form-data": CrewProjectImportSerializer},
        responses={201: CrewImportResultSerializer},
    )
    @action(detail=False, methods=["post"], url_path="import", parser_classes=[KaiJSONParser, MultiPartParser])
    def import_crew(self, request):
        """Create a crew from a CrewAI project: a zip (multipart ``file``: the project folder, or
        agents.yaml + tasks.yaml with an optional crew.yaml / crew.jsonc; crew.py is read, never
        run), or JSON YAML (``crew_yaml``, the export document, or agents_yaml + tasks_yaml). The
        answer is the crew with a report of what was mapped and defaulted; anything refused is a
        400 naming it."""
        if request.content_type.startswith("multipart/"):
            data = validated(CrewProjectImportSerializer, request)
            upload = data["file"]
            if upload.size > MAX_ARCHIVE_BYTES:
                raise exceptions.ValidationError({"file": [f"The archive is over {MAX_ARCHIVE_BYTES // 2**20} MB."]})
            crew, report = services.crew_import_project(
                organization=self.organization,
                actor=request.user,
                archive=upload.read(),
                name=data.get("name", ""),
                model=data.get("model"),
                allow_missing_tools=data["allow_missing_tools"],
            )
        else:
            data = validated(CrewImportSerializer, request)
            crew = services.crew_import(organization=self.organization, actor=request.user, data=data)
            report = {"files": [], "mapped": [], "defaulted": [], "missing_tools": []}
        return Response({**CrewSerializer(crew).data, "report": report}, status=status.HTTP_201_CREATED)

    @extend_schema(
        responses={
            (200, "application/zip"): OpenApiResponse(
                response=OpenApiTypes.BINARY, description="The CrewAI project folder, zipped."
            ),
            (200, "application/json"): CrewExportSerializer,
        }
    )
    @action(detail=True, methods=["get"], renderer_classes=[ZipRenderer, KaiJSONRenderer])
    def export(self, request, pk=None):
        """The crew as a CrewAI project (zip: ``<name>/config/agents.yaml``, ``config/tasks.yaml``,
        ``crew.yaml``; what crews/import reads back); ``Accept: application/json`` answers the
        files as one JSON document instead."""
        crew = self.get_object()
        if isinstance(request.accepted_renderer, ZipRenderer):
            response = HttpResponse(services.crew_export_archive(crew=crew), content_type="application/zip")
            response["Content-Disposition"] = f'attachment; filename="{slug(crew.name)}.zip"'
            return response
        return Response(services.crew_export(crew=crew))

    def finalize_response(self, request, response, *args, **kwargs):
        """Errors of the zip route answer JSON (the error envelope), never a zip."""
        if isinstance(getattr(request, "accepted_renderer", None), ZipRenderer) and response.status_code >= 400:
            request.accepted_renderer, request.accepted_media_type = KaiJSONRenderer(), "application/json"
        return super().finalize_response(request, response, *args, **kwargs)


# --- task definitions --------------------------------------------------------------------------


@extend_schema(tags=["tasks"])
class TaskDefinitionViewSet(TenantScopedViewSet):
    """Task definitions (seed 001 ``/tasks``). ``PUT {id}`` is partial; ``PUT {id}/full`` replaces."""

    model = TaskDefinition
    serializer_class = TaskDefinitionSerializer
    filterset_fields = ["agent"]
    action_roles = {**HUMAN_WRITES, "full": HUMAN_ROLES}

    def perform_create(self, serializer):
        serializer.instance = services.task_definition_create(
            organization=self.organization, actor=self.request.user, data=serializer.validated_data
        )

    def perform_update(self, serializer):
        serializer.instance = services.task_definition_update(
            task=serializer.instance, actor=self.request.user, data=serializer.validated_data
        )

    def perform_destroy(self, instance):
        services.task_definition_delete(task=instance, actor=self.request.user)

    @extend_schema(request=TaskDefinitionSerializer, responses={200: TaskDefinitionSerializer})
    @action(detail=True, methods=["put"])
    def full(self, request, pk=None):
        """Replace the whole task: name and description are required; omitted fields reset."""
        task = self.get_object()
        serializer = TaskDefinitionSerializer(task, data=request.data)
        serializer.is_valid(raise_exception=True)
        task = services.task_definition_update(
            task=task, actor=request.user, data=serializer.validated_data, replace=True
        )
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
        serializer.instance = services.orchestration_create(
            organization=self.organization, actor=self.request.user, data=serializer.validated_data
        )

    def perform_update(self, serializer):
        serializer.instance = services.orchestration_update(
            orchestration=serializer.instance, actor=self.request.user, data=serializer.validated_data
        )

    def perform_destroy(self, instance):
        services.orchestration_delete(orchestration=instance, actor=self.request.user)

    @extend_schema(
        request=OrchestrationExecuteSerializer,
        responses={200: OrchestrationResultSerializer, 202: ExecutionCreatedSerializer},
    )
    @action(detail=True, methods=["post"])
    def execute(self, request, pk=None):
        """Run it on a worker. By default waits (up to ``timeout_ms``) and answers
        ``{output, trace_id, agents_executed, total_cost}``; with ``wait_for_completion: false`` (or
        when the wait times out) answers 202 with the execution id."""
        orchestration = self.get_object()
        data = validated(OrchestrationExecuteSerializer, request)
        inputs = data.get("inputs")
        if inputs is None:
            inputs = data["input_data"]
        execution = services.orchestration_start(
            orchestration=orchestration,
            actor=request.user,
            inputs=inputs,
            params=data["params"],
            priority=data["priority"],
        )
        if data["wait_for_completion"]:
            execution = run_services.wait_for_terminal(execution_id=execution.pk, timeout=data["timeout_ms"] / 1000)
        if not execution.is_terminal:
            return Response(created_body(execution, "Orchestration started"), status=status.HTTP_202_ACCEPTED)
        result = execution.result if isinstance(execution.result, dict) else {}
        return Response(
            {
                "execution_id": execution.pk,
                "status": execution.status,
                "output": result.get("output"),
                "outputs": result.get("outputs") or {},
                "trace_id": execution.trace_id,
                "agents_executed": result.get("agents_executed") or [],
                "total_cost": execution.cost,
                "error": execution.error,
            }
        )


# --- executions --------------------------------------------------------------------------------


class _GenerationView(KaiAPIView):
    kind = ""
    action_roles = {"post": HUMAN_ROLES}

    def post(self, request):
        data = validated(GenerationRequestSerializer, request)
        value = generation.generate(
            organization=self.organization,
            kind=self.kind,
            description=data["description"],
            model=data.get("model") or "",
            process=data.get("process") or "sequential",
        )
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
