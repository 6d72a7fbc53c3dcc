"""Serializers of the workflows app. Server-owned fields are read-only; unknown body fields are refused."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.workflows.engine import step_status
from apps.workflows.models import StepRun, Workflow, WorkflowRun, WorkflowVersion
from kai_platform.api.serializers import JSONObjectField, KaiModelSerializer, KaiSerializer

MAX_DEFINITION_BYTES = 512 * 1024


def webhook_path(workflow: Workflow) -> str:
    return f"/api/v1/workflow-hooks/{workflow.webhook_token}"


class WorkflowSerializer(KaiModelSerializer):
    user_id = serializers.UUIDField(source="created_by_id", read_only=True, allow_null=True)
    definition = JSONObjectField(
        max_bytes=MAX_DEFINITION_BYTES,
        help_text="seed 002 WorkflowDefinition: trigger, steps, error_handling, timeout_ms, retry_policy.",
    )
    success_rate = serializers.FloatField(read_only=True, help_text="Completed ÷ (completed + failed) runs, 0…1.")
    webhook_url = serializers.SerializerMethodField()

    class Meta:
        model = Workflow
        fields = [
            "id",
            "user_id",
            "name",
            "description",
            "definition",
            "version",
            "is_active",
            "trigger_type",
            "created_at",
            "updated_at",
            "last_executed",
            "execution_count",
            "success_rate",
            "webhook_url",
        ]
        read_only_fields = [
            "id",
            "user_id",
            "version",
            "trigger_type",
            "created_at",
            "updated_at",
            "last_executed",
            "execution_count",
            "success_rate",
            "webhook_url",
        ]

    @extend_schema_field(serializers.CharField())
    def get_webhook_url(self, obj) -> str:
        request = self.context.get("request")
        path = webhook_path(obj)
        return request.build_absolute_uri(path) if request is not None else path


class WorkflowCreatedSerializer(WorkflowSerializer):
    webhook_secret = serializers.CharField(read_only=True, help_text="HMAC key of the webhook; shown once.")

    class Meta(WorkflowSerializer.Meta):
        fields = [*WorkflowSerializer.Meta.fields, "webhook_secret"]


class WorkflowVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = WorkflowVersion
        fields = ["id", "version", "definition", "created_at", "created_by"]
        read_only_fields = fields


class ValidationProblemSerializer(serializers.Serializer):
    field = serializers.CharField()
    message = serializers.CharField()
    step_id = serializers.CharField(allow_null=True)


class WorkflowValidateResultSerializer(serializers.Serializer):
    valid = serializers.BooleanField()
    # the metaclass moves declared fields off the class, so Serializer.errors is untouched
    errors = ValidationProblemSerializer(many=True)  # type: ignore[assignment]
    definition = serializers.JSONField(help_text="The definition with its defaults filled in.")


class WorkflowExecuteSerializer(KaiSerializer):
    inputs = JSONObjectField(required=False, default=None, allow_null=True)
    input_data = JSONObjectField(required=False, default=dict, help_text="seed 002 workflow.execute name of inputs.")
    priority = serializers.ChoiceField(choices=["low", "normal", "high"], required=False, default="normal")
    wait_for_completion = serializers.BooleanField(required=False, default=False)
    timeout_ms = serializers.IntegerField(
        required=False,
        default=30000,
        min_value=1,
        max_value=300000,
        help_text="How long to wait with wait_for_completion.",
    )


class StepRunSerializer(serializers.ModelSerializer):
    status = serializers.SerializerMethodField()
    execution_id = serializers.UUIDField(read_only=True, allow_null=True)
    agent_id = serializers.UUIDField(read_only=True, allow_null=True)
    duration_ms = serializers.FloatField(read_only=True, allow_null=True)
    tokens = serializers.SerializerMethodField()
    cost = serializers.SerializerMethodField()

    class Meta:
        model = StepRun
        fields = [
            "id",
            "step_id",
            "attempt",
            "fallback",
            "state",
            "status",
            "execution_id",
            "agent_id",
            "inputs",
            "output",
            "error",
            "timed_out",
            "scheduled_for",
            "started_at",
            "completed_at",
            "duration_ms",
            "tokens",
            "cost",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField())
    def get_status(self, obj) -> str:
        return step_status(obj)

    @extend_schema_field(serializers.IntegerField())
    def get_tokens(self, obj) -> int:
        return obj.execution.total_tokens if obj.execution_id and obj.execution else 0

    @extend_schema_field(serializers.DecimalField(max_digits=14, decimal_places=6))
    def get_cost(self, obj) -> str:
        return str(obj.execution.cost) if obj.execution_id and obj.execution else "0"


class WorkflowRunSerializer(serializers.ModelSerializer):
    run_id = serializers.UUIDField(source="id", read_only=True)
    workflow_id = serializers.UUIDField(read_only=True)
    execution_id = serializers.UUIDField(read_only=True)
    status = serializers.CharField(source="execution.status", read_only=True)
    cancel_requested = serializers.BooleanField(source="execution.cancel_requested", read_only=True)
    started_at = serializers.DateTimeField(source="execution.started_at", read_only=True)
    completed_at = serializers.DateTimeField(source="execution.completed_at", read_only=True)
    duration_ms = serializers.FloatField(source="execution.duration_ms", read_only=True, allow_null=True)

    class Meta:
        model = WorkflowRun
        fields = [
            "id",
            "run_id",
            "workflow_id",
            "version",
            "execution_id",
            "status",
            "phase",
            "trigger_type",
            "trigger_source",
            "inputs",
            "results",
            "error",
            "failed_step",
            "cancel_requested",
            "deadline_at",
            "created_at",
            "started_at",
            "completed_at",
            "duration_ms",
        ]
        read_only_fields = fields


class WorkflowRunDetailSerializer(WorkflowRunSerializer):
    steps = StepRunSerializer(source="step_runs", many=True, read_only=True)

    class Meta(WorkflowRunSerializer.Meta):
        fields = [*WorkflowRunSerializer.Meta.fields, "steps"]
        read_only_fields = fields


class WorkflowRunStartedSerializer(serializers.Serializer):
    run_id = serializers.UUIDField()
    execution_id = serializers.UUIDField()
    workflow_id = serializers.UUIDField()
    version = serializers.IntegerField()
    status = serializers.CharField()


class WebhookSecretSerializer(serializers.Serializer):
    webhook_url = serializers.CharField()
    webhook_secret = serializers.CharField()
