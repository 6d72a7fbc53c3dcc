"""Thin views over apps.workflows.services / selectors."""

from __future__ import annotations

from typing import cast

import django_filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.runs.services import wait_for_terminal
from apps.stepup.permissions import RequiresStepUp
from apps.workflows import selectors, services
from apps.workflows.models import Workflow, WorkflowRun
from apps.workflows.serializers import (
    WebhookSecretSerializer,
    WorkflowCreatedSerializer,
    WorkflowExecuteSerializer,
    WorkflowRunDetailSerializer,
    WorkflowRunSerializer,
    WorkflowRunStartedSerializer,
    WorkflowSerializer,
    WorkflowValidateResultSerializer,
    WorkflowVersionSerializer,
    webhook_path,
)
from kai_platform.api.pagination import KaiPagination
from kai_platform.api.serializers import validated
from kai_platform.api.views import PublicAPIView
from kai_platform.tenancy.permissions import IsOrganizationMember
from kai_platform.tenancy.roles import HUMAN_ROLES
from kai_platform.tenancy.viewsets import TenantScopedViewSet, not_offered


def _started_body(run: WorkflowRun) -> dict:
    return {
        "run_id": run.pk,
        "execution_id": run.execution_id,
        "workflow_id": run.workflow_id,
        "version": run.version,
        "status": run.execution.status,
    }


@extend_schema(tags=["workflows"])
class WorkflowViewSet(TenantScopedViewSet):
    """DAG workflows (docs/workflows.md). PUT takes partial bodies; a changed definition is a new version.
    Creating, changing or deleting a workflow (and rotating its webhook secret) is a
    sensitive operation (docs/stepup.md): it needs a step-up grant when the organization sets ``require_step_up``."""

    model = Workflow
    serializer_class = WorkflowSerializer
    permission_classes = [IsOrganizationMember, RequiresStepUp]
    step_up_actions = {"create", "update", "partial_update", "destroy", "webhook_secret"}
    filterset_fields = ["is_active", "trigger_type"]
    action_roles = {name: HUMAN_ROLES for name in ("create", "update", "partial_update", "destroy", "webhook_secret")}

    def scope_queryset(self, queryset):
        return selectors.workflows_for_list(queryset=queryset)

    @extend_schema(responses={201: WorkflowCreatedSerializer})
    def create(self, request, *args, **kwargs):
        """Create a workflow; the answer carries the webhook secret, shown this once."""
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        workflow, secret = services.workflow_create(
            organization=self.organization, actor=request.user, data=serializer.validated_data
        )
        body = WorkflowSerializer(workflow, context=self.get_serializer_context()).data
        return Response({**body, "webhook_secret": secret}, status=status.HTTP_201_CREATED)

    def perform_update(self, serializer):
        serializer.instance = services.workflow_update(
            workflow=serializer.instance, actor=self.request.user, data=serializer.validated_data
        )

    def perform_destroy(self, instance):
        services.workflow_delete(workflow=instance, actor=self.request.user)

    @extend_schema(request=OpenApiTypes.OBJECT, responses={200: WorkflowValidateResultSerializer})
    @action(detail=False, methods=["post"])
    def validate(self, request):
        """Check a definition (``{definition: …}`` or the bare definition): 200 with ``valid`` and every
        problem as ``{field, message, step_id}``."""
        body = request.data
        if not isinstance(body, dict):
            raise exceptions.ValidationError({"definition": ["Must be a JSON object."]})
        definition = body["definition"] if set(body) == {"definition"} else body
        checked = services.workflow_validate(organization=self.organization, definition=definition)
        return Response(
            {
                "valid": checked.valid,
                "errors": [p.as_dict() for p in checked.problems],
                "definition": checked.definition,
            }
        )

    @extend_schema(
        request=WorkflowExecuteSerializer,
        responses={202: WorkflowRunStartedSerializer, 200: WorkflowRunDetailSerializer},
    )
    @action(detail=True, methods=["post"])
    def execute(self, request, pk=None):
        """Start a run (manual trigger). Answers 202 at once, or with ``wait_for_completion`` the
        finished run (200) — 202 still if it has not ended within ``timeout_ms``."""
        workflow = self.get_object()
        data = validated(WorkflowExecuteSerializer, request, data=request.data or {})
        inputs = data["inputs"] if data.get("inputs") is not None else data["input_data"]
        run = services.workflow_start(
            workflow=workflow,
            actor=request.user,
            inputs=inputs,
            trigger_type="manual",
            trigger_source=f"api:{request.user.pk}",
            priority=data["priority"],
        )
        if data["wait_for_completion"]:
            wait_for_terminal(execution_id=run.execution_id, timeout=data["timeout_ms"] / 1000)
            run = selectors.runs_with_steps(queryset=WorkflowRun.objects.for_org(self.organization)).get(pk=run.pk)
            if run.execution.is_terminal:
                return Response(WorkflowRunDetailSerializer(run).data)
        return Response(_started_body(run), status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses={200: WorkflowRunSerializer(many=True)})
    @action(detail=True, methods=["get"])
    def history(self, request, pk=None):
        """The workflow's runs, newest first, with its execution_count and success_rate."""
        workflow = self.get_object()
        page = self.paginate_queryset(selectors.workflow_history(workflow=workflow))
        # DEFAULT_PAGINATION_CLASS; the stubs know only BasePagination | None
        body = cast(KaiPagination, self.paginator).page_envelope(WorkflowRunSerializer(page, many=True).data)
        body.update(
            {
                "workflow_id": str(workflow.pk),
                "execution_count": workflow.execution_count,
                "success_rate": workflow.success_rate,
                "success_count": workflow.success_count,
                "failure_count": workflow.failure_count,
                "last_executed": workflow.last_executed,
            }
        )
        return Response(body)

    @extend_schema(responses={200: WorkflowVersionSerializer(many=True)})
    @action(detail=True, methods=["get"])
    def versions(self, request, pk=None):
        """Every saved version of the definition, newest first."""
        workflow = self.get_object()
        page = self.paginate_queryset(workflow.versions.order_by("-version"))
        return self.get_paginated_response(WorkflowVersionSerializer(page, many=True).data)

    @extend_schema(request=None, responses={200: WebhookSecretSerializer})
    @action(detail=True, methods=["post"], url_path="webhook-secret")
    def webhook_secret(self, request, pk=None):
        """Rotate the webhook's HMAC secret; the new one is shown this once."""
        workflow = self.get_object()
        secret = services.workflow_rotate_webhook_secret(workflow=workflow, actor=request.user)
        return Response({"webhook_url": request.build_absolute_uri(webhook_path(workflow)), "webhook_secret": secret})


class WorkflowRunFilter(django_filters.FilterSet):
    workflow = django_filters.UUIDFilter(field_name="workflow_id")
    status = django_filters.CharFilter(field_name="execution__status", lookup_expr="iexact")

    class Meta:
        model = WorkflowRun
        fields = ["workflow", "status", "trigger_type"]


@extend_schema(tags=["workflows"])
class WorkflowRunViewSet(TenantScopedViewSet):
    """Runs of workflows with their step runs (states, inputs, outputs, attempts, timings)."""

    model = WorkflowRun
    serializer_class = WorkflowRunSerializer
    http_method_names = ["get", "post", "head", "options"]
    filterset_class = WorkflowRunFilter
    action_roles = {"cancel": HUMAN_ROLES}

    def scope_queryset(self, queryset):
        if self.action == "list":
            return selectors.runs_for_list(queryset=queryset)
        return selectors.runs_with_steps(queryset=queryset)

    def get_serializer_class(self):
        return WorkflowRunSerializer if self.action == "list" else WorkflowRunDetailSerializer

    @not_offered
    def create(self, request, *args, **kwargs):
        raise exceptions.MethodNotAllowed("POST", detail="Start runs with POST workflows/{id}/execute.")

    @extend_schema(request=None, responses={200: WorkflowRunDetailSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel the run: live steps are cancelled (a running one stops within seconds), then the run
        ends CANCELLED."""
        run = services.workflow_run_cancel(run=self.get_object(), actor=request.user)
        return Response(WorkflowRunDetailSerializer(self.get_queryset().get(pk=run.pk)).data)


@extend_schema(
    tags=["workflows"],
    request=OpenApiTypes.OBJECT,
    responses={
        202: WorkflowRunStartedSerializer,
        200: OpenApiResponse(description="Signed, but the trigger's conditions did not match."),
        401: OpenApiResponse(description="Missing, bad or stale signature."),
    },
)
class WorkflowWebhookView(PublicAPIView):
    """A workflow's webhook trigger (its secret URL). Sign each delivery: ``X-Kai-Timestamp: <unix s>``
    and ``X-Kai-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>``; an optional
    ``X-Kai-Delivery`` id makes redeliveries start the run only once. The JSON body becomes the inputs."""

    def post(self, request, token: str):
        body = request.body
        run = services.workflow_webhook(
            token=token,
            body=body,
            timestamp=request.headers.get("X-Kai-Timestamp"),
            signature=request.headers.get("X-Kai-Signature"),
            delivery_id=request.headers.get("X-Kai-Delivery"),
        )
        if run is None:
            return Response({"triggered": False, "reason": "the trigger's conditions do not match the payload"})
        return Response({"triggered": True, **_started_body(run)}, status=status.HTTP_202_ACCEPTED)
