"""Serializers of the scheduler. Server-owned fields are read-only; unknown body fields are refused."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.runs.models import Execution
from apps.scheduler import cron
from apps.scheduler.models import MisfirePolicy, Schedule, TargetType
from kai_platform.api.serializers import JSONObjectField, KaiModelSerializer, KaiSerializer


class LastExecutionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Execution
        fields = ["id", "kind", "status", "run_name", "created_at", "started_at", "completed_at"]
        read_only_fields = fields


class ScheduleSerializer(KaiModelSerializer):
    crew_id = serializers.UUIDField(required=False, allow_null=True, help_text="target_type crew.")
    agent_id = serializers.UUIDField(required=False, allow_null=True, help_text="target_type agent_task.")
    workflow_id = serializers.UUIDField(required=False, allow_null=True, help_text="target_type workflow.")
    target_type = serializers.ChoiceField(choices=TargetType.choices, required=False)
    timezone = serializers.CharField(required=False, max_length=64)
    misfire_policy = serializers.ChoiceField(
        choices=MisfirePolicy.choices,
        required=False,
        help_text="After downtime: run_once fires one run for the missed ticks, skip drops them.",
    )
    inputs = JSONObjectField(required=False)
    task = JSONObjectField(required=False)
    last_execution = LastExecutionSerializer(read_only=True)
    next_run_at = serializers.SerializerMethodField()

    class Meta:
        model = Schedule
        fields = [
            "id",
            "name",
            "description",
            "cron_expression",
            "timezone",
            "target_type",
            "crew_id",
            "agent_id",
            "workflow_id",
            "inputs",
            "task",
            "enabled",
            "misfire_policy",
            "last_run_at",
            "last_execution",
            "next_run_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "last_run_at", "last_execution", "next_run_at", "created_at", "updated_at"]

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_next_run_at(self, obj):
        if not obj.enabled:
            return None
        ticks = cron.next_ticks(obj.cron_expression, obj.timezone, now=timezone.now(), count=1)
        return ticks[0].isoformat() if ticks else None

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["crew_id"] = str(instance.crew_id) if instance.crew_id else None
        data["agent_id"] = str(instance.agent_id) if instance.agent_id else None
        data["workflow_id"] = str(instance.workflow_id) if instance.workflow_id else None
        return data

    def service_data(self) -> dict:
        """The validated body in the services' terms (``crew``/``agent``/``workflow`` ids)."""
        data = dict(self.validated_data)
        for field in ("crew", "agent", "workflow"):
            if f"{field}_id" in data:
                data[field] = data.pop(f"{field}_id")
        return data


class ToggleSerializer(KaiSerializer):
    enabled = serializers.BooleanField(required=False, help_text="Omit to flip.")


class RunNowSerializer(serializers.Serializer):
    execution_id = serializers.UUIDField()
    status = serializers.CharField()
    schedule_id = serializers.UUIDField()


class NextRunSerializer(serializers.Serializer):
    at = serializers.DateTimeField(help_text="In the schedule's time zone.")
    at_utc = serializers.DateTimeField()


class NextRunsSerializer(serializers.Serializer):
    schedule_id = serializers.UUIDField()
    cron_expression = serializers.CharField()
    timezone = serializers.CharField()
    enabled = serializers.BooleanField()
    next_runs = NextRunSerializer(many=True)
