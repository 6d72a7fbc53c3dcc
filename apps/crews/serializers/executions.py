"""Serializers of executions, their logs, spans and traces."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiSerializerExtension
from rest_framework import serializers

from apps.crews.models import Process
from apps.crews.serializers.common import PriorityField
from apps.runs.models import Execution
from kai_platform.api.schema import not_blank
from kai_platform.api.serializers import JSONObjectField, KaiModelSerializer, KaiSerializer

# --- executions --------------------------------------------------------------------------------


class ExecutionSerializer(KaiModelSerializer):
    execution_id = serializers.UUIDField(source="id", read_only=True)
    crew_id = serializers.UUIDField(read_only=True, allow_null=True)
    orchestration_id = serializers.UUIDField(read_only=True, allow_null=True)
    agent_id = serializers.UUIDField(read_only=True, allow_null=True)
    parent_id = serializers.UUIDField(read_only=True, allow_null=True)
    replayed_from = serializers.UUIDField(
        source="replayed_from_id",
        read_only=True,
        allow_null=True,
        help_text="The run this one replays (POST executions/{id}/replay).",
    )
    total_tokens = serializers.IntegerField(read_only=True)
    duration_ms = serializers.FloatField(read_only=True, allow_null=True)
    result = serializers.JSONField(read_only=True, allow_null=True)

    class Meta:
        model = Execution
        fields = [
            "id",
            "execution_id",
            "kind",
            "status",
            "run_name",
            "crew_id",
            "orchestration_id",
            "agent_id",
            "parent_id",
            "replayed_from",
            "inputs",
            "model",
            "params",
            "result",
            "error",
            "trace_id",
            "stream_id",
            "priority",
            "cancel_requested",
            "attempts",
            "max_attempts",
            "worker",
            "tokens_in",
            "tokens_out",
            "total_tokens",
            "cost",
            "created_at",
            "started_at",
            "completed_at",
            "heartbeat_at",
            "updated_at",
            "duration_ms",
        ]
        read_only_fields = fields


class ExecutionCreateSerializer(KaiSerializer):
    crew_id = serializers.UUIDField(required=False)
    orchestration_id = serializers.UUIDField(required=False)
    agent_id = serializers.UUIDField(required=False)
    agents_yaml = serializers.CharField(required=False, trim_whitespace=False)
    tasks_yaml = serializers.CharField(required=False, trim_whitespace=False)
    process = serializers.ChoiceField(choices=Process.choices, required=False)
    config = JSONObjectField(
        required=False,
        help_text="An inline crew's crew-level keys: planning, manager_llm, manager_agent, memory (docs/crewai.md).",
    )
    description = serializers.CharField(required=False, help_text="With agent_id: the task the agent runs.")
    expected_output = serializers.CharField(required=False, allow_blank=True)
    inputs = JSONObjectField(required=False, default=dict)
    model = serializers.CharField(required=False, allow_blank=True, max_length=200)
    run_name = serializers.CharField(required=False, allow_blank=True, max_length=300)
    params = JSONObjectField(
        required=False,
        default=dict,
        help_text="LLM parameters: temperature, max_tokens, top_p, stop; the builtin provider "
        "also takes latency_ms and tokens_per_s.",
    )
    priority = PriorityField(required=False, default=5)
    max_attempts = serializers.IntegerField(
        required=False,
        default=None,
        allow_null=True,
        min_value=1,
        max_value=5,
        help_text="Tries when the run's worker is lost; default 3 for crews (they checkpoint their steps), 1 else.",
    )

    def validate(self, attrs):
        targets = [k for k in ("crew_id", "orchestration_id", "agent_id") if attrs.get(k)]
        inline = bool(attrs.get("agents_yaml") or attrs.get("tasks_yaml"))
        if len(targets) + inline != 1:
            raise serializers.ValidationError(
                "Give exactly one of crew_id, orchestration_id, agent_id, or agents_yaml + tasks_yaml."
            )
        if inline and not (attrs.get("agents_yaml") and attrs.get("tasks_yaml")):
            raise serializers.ValidationError(
                {
                    "tasks_yaml" if attrs.get("agents_yaml") else "agents_yaml": [
                        "An inline crew needs both agents_yaml and tasks_yaml."
                    ]
                }
            )
        if attrs.get("agent_id") and not attrs.get("description"):
            raise serializers.ValidationError({"description": ["A run of one agent needs a description."]})
        return attrs


#: what a run starts from (``ExecutionCreateSerializer.validate``): exactly one of these groups, all of its keys
EXECUTION_TARGETS = (("crew_id",), ("orchestration_id",), ("agent_id", "description"), ("agents_yaml", "tasks_yaml"))


class ExecutionCreateSchema(OpenApiSerializerExtension):
    """The document states the rule ``validate`` enforces: one variant per target (``oneOf``), each
    with its own keys required and no other target's keys."""

    target_class = ExecutionCreateSerializer
    priority = 1  # before the strict-serializer extension, whose output it starts from

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        if direction != "request":
            return schema
        not_blank(self.target, schema)  # as the strict-serializer extension does: a trimmed text is not blank
        keys = {key for group in EXECUTION_TARGETS for key in group} - {"description"}
        common = {k: v for k, v in schema["properties"].items() if k not in keys}
        variants = [
            {
                "type": "object",
                "additionalProperties": False,
                "required": list(group),
                "properties": {**common, **{k: schema["properties"][k] for k in group}},
            }
            for group in EXECUTION_TARGETS
        ]
        return {"description": schema.get("description", ""), "oneOf": variants}


class ExecutionCreatedSerializer(serializers.Serializer):
    execution_id = serializers.UUIDField()
    status = serializers.CharField()
    message = serializers.CharField()
    run_name = serializers.CharField()
    trace_id = serializers.CharField()


class GenerateNameSerializer(KaiSerializer):
    agents_yaml = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    tasks_yaml = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    model = serializers.CharField(required=False, allow_blank=True, max_length=200)  # Execution.model
    crew_id = serializers.UUIDField(required=False)


class ExecutionEventSerializer(serializers.Serializer):
    from_status = serializers.CharField()
    to_status = serializers.CharField()
    reason = serializers.CharField()
    at = serializers.DateTimeField()


class ExecutionHistorySerializer(ExecutionSerializer):
    events = ExecutionEventSerializer(many=True, read_only=True)

    class Meta(ExecutionSerializer.Meta):
        fields = ExecutionSerializer.Meta.fields + ["events"]
        read_only_fields = fields


class ExecutionLogSerializer(serializers.Serializer):
    seq = serializers.IntegerField()
    level = serializers.CharField()
    message = serializers.CharField()
    # drf-stubs read a declared field named "data" as overriding Serializer.data (DRF moves it off the class)
    data = serializers.JSONField()  # type: ignore[assignment]
    created_at = serializers.DateTimeField()


class ExecutionLogPageSerializer(serializers.Serializer):
    execution_id = serializers.UUIDField()
    status = serializers.CharField()
    items = ExecutionLogSerializer(many=True)
    total = serializers.IntegerField()
    limit = serializers.IntegerField()
    offset = serializers.IntegerField()
    has_more = serializers.BooleanField()
    last_seq = serializers.IntegerField()


class SpanSerializer(serializers.Serializer):
    span_id = serializers.CharField()
    parent_span_id = serializers.CharField(allow_blank=True)
    kind = serializers.CharField()
    name = serializers.CharField()
    status = serializers.CharField()
    agent_id = serializers.UUIDField(allow_null=True)
    model = serializers.CharField(allow_blank=True)
    started_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField(allow_null=True)
    duration_ms = serializers.FloatField(allow_null=True)
    tokens_in = serializers.IntegerField()
    tokens_out = serializers.IntegerField()
    cost = serializers.DecimalField(max_digits=14, decimal_places=6)
    attributes = serializers.JSONField()


SPAN_FIELDS = list(SpanSerializer().fields)


class TraceSerializer(serializers.Serializer):
    id = serializers.UUIDField(help_text="The execution's id.")
    execution_id = serializers.UUIDField()
    trace_id = serializers.CharField()
    name = serializers.CharField()
    kind = serializers.CharField()
    status = serializers.CharField()
    agent_id = serializers.UUIDField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    completed_at = serializers.DateTimeField(allow_null=True)
    duration_ms = serializers.FloatField(allow_null=True)
    tokens_in = serializers.IntegerField()
    tokens_out = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    cost = serializers.DecimalField(max_digits=14, decimal_places=6)
    created_at = serializers.DateTimeField()


class TraceDetailSerializer(TraceSerializer):
    spans = SpanSerializer(many=True)
    tree = serializers.ListField(child=serializers.DictField())
