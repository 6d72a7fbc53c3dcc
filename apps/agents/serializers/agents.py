"""Serializers of agents, their versions, status, test runs and memory."""

from __future__ import annotations

import json

from drf_spectacular.extensions import OpenApiSerializerExtension
from rest_framework import serializers

from apps.agents.models import CLIENT_SETTABLE_STATUSES, Agent, AgentMemory, AgentStatus, AgentVersion
from apps.agents.serializers.common import ConfigField
from kai_platform.api.serializers import JSONObjectField, JSONValueField, KaiModelSerializer, KaiSerializer

# --- agents ------------------------------------------------------------------------------------


class AgentSerializer(KaiModelSerializer):
    model = serializers.CharField(
        write_only=True, required=False, allow_blank=True, max_length=200, help_text="Alias of `llm`."
    )
    tools = serializers.ListField(child=serializers.CharField(max_length=100), required=False, max_length=50)
    config = ConfigField(required=False)
    status = serializers.ChoiceField(choices=AgentStatus.choices, required=False)

    class Meta:
        model = Agent
        fields = [
            "id",
            "agent_number",
            "name",
            "description",
            "role",
            "goal",
            "backstory",
            "llm",
            "model",
            "tools",
            "allow_delegation",
            "verbose",
            "agent_type",
            "config",
            "config_yaml",
            "status",
            "last_error",
            "is_active",
            "voice_enabled",
            "version",
            "execution_count",
            "average_execution_time",
            "last_execution",
            "last_heartbeat",
            "organization",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "id",
            "agent_number",
            "last_error",
            "version",
            "execution_count",
            "average_execution_time",
            "last_execution",
            "last_heartbeat",
            "organization",
            "created_by",
            "created_at",
            "updated_at",
        ]
        extra_kwargs = {"name": {"required": False}}

    def validate_status(self, value):
        if value not in CLIENT_SETTABLE_STATUSES:
            allowed = ", ".join(CLIENT_SETTABLE_STATUSES)
            raise serializers.ValidationError(f"'{value}' is set by the run engine; clients may set: {allowed}.")
        return value

    def validate(self, attrs):
        if "model" in attrs:
            alias = attrs.pop("model")
            attrs.setdefault("llm", alias)
        if self.instance is None and not attrs.get("name") and not attrs.get("config_yaml"):
            raise serializers.ValidationError({"name": ["This field is required."]})
        return attrs


class AgentVersionSerializer(KaiModelSerializer):
    class Meta:
        model = AgentVersion
        fields = ["id", "version", "snapshot", "changed_fields", "created_by", "created_at"]
        read_only_fields = fields


class AgentStatusSerializer(KaiSerializer):
    agent_id = serializers.UUIDField()
    agent_number = serializers.IntegerField()
    status = serializers.CharField(help_text="active|idle|offline|error|draft|executing|disabled")
    is_active = serializers.BooleanField()
    timestamp = serializers.DateTimeField()
    last_heartbeat = serializers.DateTimeField(allow_null=True)
    online = serializers.BooleanField(help_text="A heartbeat arrived within the heartbeat TTL.")
    detail = serializers.DictField(help_text="Seed 002 AgentStatus: state, last_error, health_score, resource_usage.")


class AgentTestPromptSerializer(KaiSerializer):
    prompt = serializers.CharField(max_length=100_000)
    parameters = JSONObjectField(required=False, help_text="temperature, max_tokens, … for this call.")


#: keys of a free input object whose text is the prompt, in this order
_PROMPT_KEYS = ("prompt", "input", "query", "question", "message", "text", "task")
#: names of server-owned fields: refused at the top of a free input object, where they would read as an
#: attempt to set them (inside ``{input_data: {...}}`` any key goes)
_RESERVED_KEYS = frozenset(
    {
        "id",
        "organization",
        "organization_id",
        "created_by",
        "created_at",
        "updated_at",
        "status",
        "execution_count",
        "average_execution_time",
        "last_execution",
    }
)


class AgentTestRequestSerializer(serializers.Serializer):
    """``agents/{id}/test``: ``{prompt, parameters}``, or any other non-empty JSON object (seed
    003's ``input_data``). Validated data always has ``prompt``; ``input`` is the free object."""

    def to_internal_value(self, data):
        strict = AgentTestPromptSerializer(data=data)
        if strict.is_valid():
            return dict(strict.validated_data)
        if not isinstance(data, dict) or not data:
            raise serializers.ValidationError({"non_field_errors": ["Send {prompt} or a non-empty JSON object."]})
        wrapped = set(data) == {"input_data"} and isinstance(data["input_data"], dict)
        free = data["input_data"] if wrapped else data
        reserved = sorted(_RESERVED_KEYS.intersection(data)) if not wrapped else []
        if reserved:
            raise serializers.ValidationError(
                {
                    key: ["A server-owned field; to pass it as input, wrap the object: {input_data: {...}}."]
                    for key in reserved
                }
            )
        prompt = next((free[k] for k in _PROMPT_KEYS if isinstance(free.get(k), str) and free[k].strip()), None)
        if prompt is None:
            prompt = json.dumps(free, ensure_ascii=False, sort_keys=True, default=str)
        if len(prompt) > 100_000:
            raise serializers.ValidationError({"non_field_errors": ["The input is over 100,000 characters."]})
        return {"prompt": prompt, "input": free}


class AgentTestRequestSchema(OpenApiSerializerExtension):
    """The request of ``agents/{id}/test`` in the OpenAPI document: either shape."""

    target_class = AgentTestRequestSerializer

    def map_serializer(self, auto_schema, direction):
        prompt = auto_schema.resolve_serializer(AgentTestPromptSerializer, direction).ref
        return {
            "anyOf": [
                prompt,
                {
                    "type": "object",
                    "minProperties": 1,
                    "additionalProperties": True,
                    "not": {"anyOf": [{"required": [key]} for key in sorted(_RESERVED_KEYS)]},
                    "description": "Seed 003's free input object (`agent.run(**input_data)`): its `prompt`/`input`/`query`/"
                    "`question`/`message`/`text`/`task` text is the prompt, else the whole object as JSON.",
                },
            ]
        }


class AgentTestResponseSerializer(KaiSerializer):
    output = serializers.CharField()
    tokens = serializers.DictField(child=serializers.IntegerField())
    cost = serializers.DecimalField(max_digits=14, decimal_places=6)
    latency_ms = serializers.FloatField()
    model = serializers.CharField()
    provider = serializers.CharField()
    provider_type = serializers.CharField()
    tool_calls = serializers.ListField(child=serializers.DictField())
    note = serializers.CharField(required=False)
    execution_id = serializers.UUIDField(help_text="The run that answered (logs, trace, usage).")


#: the longest a memory entry may live, in seconds (ten years; a larger ttl overflowed the expiry: a 500)
MAX_MEMORY_TTL = 10 * 365 * 24 * 3600


class MemorySerializer(KaiModelSerializer):
    type = serializers.CharField(write_only=True, required=False, max_length=50, help_text="Alias of memory_type.")
    content = JSONValueField()
    tags = serializers.ListField(child=serializers.CharField(max_length=64), required=False, max_length=20)
    ttl = serializers.IntegerField(
        write_only=True,
        required=False,
        min_value=1,
        max_value=MAX_MEMORY_TTL,
        allow_null=True,
        help_text="Seconds until the entry expires (at most ten years).",
    )
    agent_number = serializers.IntegerField(
        write_only=True, required=False, help_text="Ignored (the URL names the agent)."
    )

    class Meta:
        model = AgentMemory
        fields = [
            "id",
            "agent",
            "memory_type",
            "type",
            "content",
            "tags",
            "ttl",
            "agent_number",
            "expires_at",
            "created_at",
        ]
        read_only_fields = ["id", "agent", "expires_at", "created_at"]
        extra_kwargs = {"memory_type": {"required": False}}

    def validate(self, attrs):
        alias = attrs.pop("type", None)
        attrs.pop("agent_number", None)
        if alias and not attrs.get("memory_type"):
            attrs["memory_type"] = alias
        return attrs
