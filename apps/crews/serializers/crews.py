"""Serializers of crews, orchestrations and task definitions."""

from __future__ import annotations

from rest_framework import serializers

from apps.crews.models import Crew, Orchestration, Process, TaskDefinition
from apps.crews.serializers.common import OWNED, PriorityField
from kai_platform.api.serializers import JSONObjectField, KaiModelSerializer, KaiSerializer

# --- crews -------------------------------------------------------------------------------------


class CrewSerializer(KaiModelSerializer):
    config = JSONObjectField(required=False)

    class Meta:
        model = Crew
        fields = [
            "id",
            "name",
            "description",
            "agents_yaml",
            "tasks_yaml",
            "model",
            "process",
            "verbose",
            "config",
            "created_at",
            "updated_at",
        ]
        read_only_fields = OWNED
        extra_kwargs = {"agents_yaml": {"trim_whitespace": False}, "tasks_yaml": {"trim_whitespace": False}}


class CrewDebugSerializer(KaiSerializer):
    agents_yaml = serializers.CharField(allow_blank=True, trim_whitespace=False)
    tasks_yaml = serializers.CharField(allow_blank=True, trim_whitespace=False)
    process = serializers.ChoiceField(choices=Process.choices, default=Process.SEQUENTIAL)
    model = serializers.CharField(required=False, allow_blank=True, max_length=200)  # Execution.model
    config = JSONObjectField(required=False, help_text="Crew-level keys: planning, manager_llm, manager_agent, memory.")
    inputs = JSONObjectField(
        required=False,
        help_text="The run's inputs: every placeholder they leave unfilled is "
        "an error (without them, every placeholder is listed).",
    )


class SpecErrorSerializer(serializers.Serializer):
    field = serializers.CharField()
    line = serializers.IntegerField(allow_null=True)
    message = serializers.CharField()


class CrewDebugResultSerializer(serializers.Serializer):
    valid = serializers.BooleanField()
    # drf-stubs read a declared field named "errors" as overriding Serializer.errors (DRF moves it off the class)
    errors = SpecErrorSerializer(many=True)  # type: ignore[assignment]
    agents = serializers.ListField(child=serializers.DictField())
    tasks = serializers.ListField(child=serializers.DictField())
    placeholders = serializers.ListField(child=serializers.CharField())
    missing_inputs = serializers.ListField(
        child=serializers.CharField(), help_text="Placeholders the given inputs leave unfilled."
    )


class CrewImportSerializer(KaiSerializer):
    name = serializers.CharField(required=False, max_length=200)
    description = serializers.CharField(required=False, allow_blank=True)
    crew_yaml = serializers.CharField(required=False, trim_whitespace=False)
    agents_yaml = serializers.CharField(required=False, trim_whitespace=False)
    tasks_yaml = serializers.CharField(required=False, trim_whitespace=False)
    process = serializers.ChoiceField(choices=Process.choices, required=False)
    model = serializers.CharField(required=False, allow_blank=True, max_length=200)  # Execution.model
    verbose = serializers.BooleanField(required=False)


class CrewProjectImportSerializer(KaiSerializer):
    file = serializers.FileField(
        help_text="A CrewAI project as a zip: the project folder (config/agents.yaml, "
        "config/tasks.yaml, crew.py) or just agents.yaml + tasks.yaml, with an "
        "optional crew.yaml / crew.jsonc."
    )
    name = serializers.CharField(required=False, max_length=200, help_text="Else crew.yaml's name.")
    model = serializers.CharField(required=False, allow_blank=True, max_length=200)
    allow_missing_tools = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Leave out tools the organization lacks (listed in the report) instead of refusing the project.",
    )


class ImportReportSerializer(serializers.Serializer):
    files = serializers.ListField(child=serializers.CharField(), help_text="The project files read.")
    mapped = serializers.ListField(child=serializers.CharField())
    defaulted = serializers.ListField(child=serializers.CharField())
    missing_tools = serializers.ListField(child=serializers.CharField())


class CrewImportResultSerializer(CrewSerializer):
    report = ImportReportSerializer(read_only=True)

    class Meta(CrewSerializer.Meta):
        fields = CrewSerializer.Meta.fields + ["report"]


class CrewExportSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    process = serializers.CharField()
    model = serializers.CharField()
    agents_yaml = serializers.CharField()
    tasks_yaml = serializers.CharField()
    files = serializers.DictField(child=serializers.CharField())
    crew_yaml = serializers.CharField()


# --- orchestrations ----------------------------------------------------------------------------


class OrchestrationSerializer(KaiModelSerializer):
    agent_ids = serializers.ListField(child=serializers.UUIDField(), required=False, max_length=50)

    class Meta:
        model = Orchestration
        fields = [
            "id",
            "name",
            "description",
            "pattern",
            "config_yaml",
            "agent_ids",
            "status",
            "created_at",
            "updated_at",
        ]
        read_only_fields = OWNED
        extra_kwargs = {"config_yaml": {"trim_whitespace": False}}


class OrchestrationExecuteSerializer(KaiSerializer):
    input_data = JSONObjectField(required=False, default=dict)
    inputs = JSONObjectField(required=False)
    task = serializers.JSONField(
        required=False,
        allow_null=True,
        help_text="Seed 003's input: the task for the agents (text or an object); becomes "
        "input_data.task. null: no task.",
    )
    wait_for_completion = serializers.BooleanField(default=True)
    timeout_ms = serializers.IntegerField(default=60000, min_value=0, max_value=600000)
    params = JSONObjectField(required=False, default=dict)
    priority = PriorityField(required=False, default=5)

    def validate(self, attrs):
        if "task" in attrs and attrs["task"] is None:
            del attrs["task"]
        if "task" in attrs:
            target = "inputs" if attrs.get("inputs") is not None else "input_data"
            attrs[target] = {**(attrs.get(target) or {}), "task": attrs.pop("task")}
        return attrs


class OrchestrationResultSerializer(serializers.Serializer):
    execution_id = serializers.UUIDField()
    status = serializers.CharField()
    output = serializers.CharField(allow_null=True)
    outputs = serializers.DictField(required=False)
    trace_id = serializers.CharField()
    agents_executed = serializers.ListField(child=serializers.CharField())
    total_cost = serializers.DecimalField(max_digits=14, decimal_places=6)
    error = serializers.CharField(required=False, allow_blank=True)


# --- task definitions --------------------------------------------------------------------------


class TaskDefinitionSerializer(KaiModelSerializer):
    config = JSONObjectField(required=False)

    class Meta:
        model = TaskDefinition
        fields = [
            "id",
            "name",
            "description",
            "expected_output",
            "agent",
            "tools",
            "context",
            "async_execution",
            "config",
            "created_at",
            "updated_at",
        ]
        read_only_fields = OWNED
