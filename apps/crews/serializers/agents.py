"""Serializers of the agent entry points (task, command, execute, stream-prompt), generation, usage and runtime."""

from __future__ import annotations

from rest_framework import serializers

from apps.crews.models import Process
from apps.crews.serializers.common import PriorityField
from apps.quotas.serializers import QuotaStatusSerializer
from kai_platform.api.serializers import JSONObjectField, KaiSerializer

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
    # drf-stubs read a declared field named "context" as overriding Field.context (DRF moves it off the class)
    context = JSONObjectField(required=False, default=dict)  # type: ignore[assignment]
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
    # drf-stubs read a declared field named "data" as overriding Serializer.data (DRF moves it off the class)
    data = serializers.JSONField(allow_null=True)  # type: ignore[assignment]
    error = serializers.CharField(allow_null=True)
    metadata = serializers.DictField()


class AgentExecuteDataSerializer(serializers.Serializer):
    execution_id = serializers.UUIDField()
    result = AgentResponseSerializer(required=False)
    status = serializers.CharField()


class AgentExecuteResponseSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    # drf-stubs read a declared field named "data" as overriding Serializer.data (DRF moves it off the class)
    data = AgentExecuteDataSerializer()  # type: ignore[assignment]


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
