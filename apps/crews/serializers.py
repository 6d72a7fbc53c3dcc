"""Serializers of the crews app. Server-owned fields are read-only; unknown body fields are refused."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.crews.models import Crew, Orchestration, Pattern, Process, TaskDefinition
from apps.quotas.serializers import QuotaStatusSerializer
from apps.runs.models import Execution, ExecutionKind
from apps.runs.services import PRIORITY_NAMES
from kai_platform.api.serializers import JSONObjectField, KaiModelSerializer, KaiSerializer

OWNED = ("id", "created_at", "updated_at")


@extend_schema_field(
    {"oneOf": [{"type": "string", "enum": list(PRIORITY_NAMES)}, {"type": "integer", "minimum": 0, "maximum": 9}]}
)
class PriorityField(serializers.Field):
    """``low|normal|high`` or 0…9 (9 runs first)."""

    default_error_messages = {"invalid": "Must be low, normal, high or an integer 0…9."}

    def to_internal_value(self, data):
        if isinstance(data, str) and data.lower() in PRIORITY_NAMES:
            return PRIORITY_NAMES[data.lower()]
        try:
            value = int(data)
        except (TypeError, ValueError):
            self.fail("invalid")
        if not 0 <= value <= 9:
            self.fail("invalid")
        return value

    def to_representation(self, value):
        return value


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
    errors = SpecErrorSerializer(many=True)
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
    data = serializers.JSONField()
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


# --- agent entry points ------------------------------------------------------------------------


class AgentTaskSerializer(KaiSerializer):
    description = serializers.CharField()
    expected_output = serializers.CharField(required=False, allow_blank=True, default="")
    inputs = JSONObjectField(required=False, default=dict)
    name = serializers.CharField(required=False, max_length=200)
    model = serializers.CharField(required=False, allow_blank=True, max_length=200)  # Execution.model
    params = JSONObjectField(required=False, default=dict)
    priority = PriorityField(required=False, default=5)


class AgentTaskAcceptedSerializer(serializers.Serializer):
    task_id = serializers.UUIDField()
    execution_id = serializers.UUIDField()
    status = serializers.CharField()


class TaskStatusSerializer(serializers.Serializer):
    task_id = serializers.UUIDField()
    execution_id = serializers.UUIDField()
    kind = serializers.CharField()
    status = serializers.CharField()
    result = serializers.JSONField(allow_null=True)
    error = serializers.CharField(allow_blank=True)
    agent_id = serializers.UUIDField(allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    completed_at = serializers.DateTimeField(allow_null=True)
    tokens_in = serializers.IntegerField()
    tokens_out = serializers.IntegerField()
    cost = serializers.DecimalField(max_digits=14, decimal_places=6)


class AgentCommandSerializer(KaiSerializer):
    """Seed 000: ``{command, params}``."""

    command = serializers.CharField(max_length=200)
    params = JSONObjectField(required=False, default=dict)
    model = serializers.CharField(required=False, allow_blank=True, max_length=200)  # Execution.model
    llm_params = JSONObjectField(required=False, default=dict)
    priority = PriorityField(required=False, default=5)


class AgentCommandAcceptedSerializer(serializers.Serializer):
    execution_id = serializers.UUIDField()
    stream_id = serializers.CharField()
    command = serializers.CharField()
    status = serializers.CharField()


class AgentCommandBodySerializer(KaiSerializer):
    """Seed 002 ``AgentCommand``."""

    action = serializers.CharField(max_length=200)
    parameters = JSONObjectField(required=False, default=dict)
    context = JSONObjectField(required=False, default=dict)
    user_id = serializers.CharField(required=False, allow_blank=True)
    request_id = serializers.CharField(required=False, allow_blank=True)
    voice_input = serializers.BooleanField(required=False, default=False)
    priority = serializers.ChoiceField(choices=["low", "normal", "high"], required=False, default="normal")


class AgentExecuteSerializer(KaiSerializer):
    """Seed 002 ``ExecuteAgentRequest``."""

    command = AgentCommandBodySerializer()
    wait_for_completion = serializers.BooleanField(required=False, default=False)
    timeout_ms = serializers.IntegerField(required=False, default=30000, min_value=0, max_value=600000)
    params = JSONObjectField(required=False, default=dict)


class AgentResponseSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    data = serializers.JSONField(allow_null=True)
    error = serializers.CharField(allow_null=True)
    metadata = serializers.DictField()


class AgentExecuteDataSerializer(serializers.Serializer):
    execution_id = serializers.UUIDField()
    result = AgentResponseSerializer(required=False)
    status = serializers.CharField()


class AgentExecuteResponseSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    data = AgentExecuteDataSerializer()


class StreamPromptSerializer(KaiSerializer):
    prompt = serializers.CharField()
    stream_id = serializers.CharField(required=False, max_length=40)
    model = serializers.CharField(required=False, allow_blank=True, max_length=200)  # Execution.model
    params = JSONObjectField(required=False, default=dict)
    stream = serializers.BooleanField(
        required=False, default=True, help_text="false: answer 202 with the stream_id at once (read it on the socket)."
    )


# --- generation --------------------------------------------------------------------------------


class GenerationRequestSerializer(KaiSerializer):
    description = serializers.CharField(max_length=4000)
    model = serializers.CharField(required=False, allow_blank=True, max_length=200)
    process = serializers.ChoiceField(choices=Process.choices, required=False)


class GeneratedAgentSerializer(serializers.Serializer):
    agent = serializers.DictField()


class GeneratedTaskSerializer(serializers.Serializer):
    task = serializers.DictField()


class GeneratedCrewSerializer(serializers.Serializer):
    crew = serializers.DictField()
    agents = serializers.ListField(child=serializers.DictField())
    tasks = serializers.ListField(child=serializers.DictField())


# --- usage & runtime ---------------------------------------------------------------------------


class UsageSerializer(serializers.Serializer):
    period = serializers.CharField()
    since = serializers.DateField()
    until = serializers.DateField()
    total_executions = serializers.IntegerField()
    completed_executions = serializers.IntegerField()
    failed_executions = serializers.IntegerField()
    total_cost_usd = serializers.DecimalField(max_digits=14, decimal_places=6)
    total_tokens = serializers.IntegerField()
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    llm_calls = serializers.IntegerField()
    by_agent = serializers.ListField(child=serializers.DictField())
    by_day = serializers.ListField(child=serializers.DictField())
    by_model = serializers.ListField(child=serializers.DictField())
    quotas = serializers.DictField(
        child=QuotaStatusSerializer(),
        required=False,
        help_text="Plan quotas (organization usage only): quota → its window's numbers.",
    )


class RuntimeStatusSerializer(serializers.Serializer):
    active_agents = serializers.IntegerField()
    pending_tasks = serializers.IntegerField()
    healthy_count = serializers.IntegerField()
    total_agents = serializers.IntegerField()
    running_executions = serializers.IntegerField()
    pending_executions = serializers.IntegerField()
    concurrency_limit = serializers.IntegerField()
    workers = serializers.ListField(child=serializers.CharField())
    queues = serializers.DictField(child=serializers.IntegerField())
    circuit_breakers = serializers.ListField(child=serializers.DictField())


class RuntimeAgentSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    status = serializers.CharField()
    last_heartbeat = serializers.DateTimeField(allow_null=True)
    running_executions = serializers.IntegerField()
    circuit_breaker_state = serializers.CharField()
    provider = serializers.CharField(allow_null=True)
    budget_used = serializers.DecimalField(max_digits=14, decimal_places=6)
    budget_limit = serializers.DecimalField(max_digits=14, decimal_places=6, allow_null=True)


KIND_CHOICES = ExecutionKind.choices
PATTERN_CHOICES = Pattern.choices
