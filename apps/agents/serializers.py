"""Serializers of the agents app. Server-owned fields are read-only; unknown body fields are refused."""
from __future__ import annotations

import json
import uuid

from django.conf import settings
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import extend_schema_field

from rest_framework import serializers

from apps.agents import services
from apps.agents.models import (
    CLIENT_SETTABLE_STATUSES,
    Agent,
    AgentMemory,
    AgentStatus,
    AgentTemplate,
    AgentVersion,
    Credential,
    CredentialType,
    Deployment,
    ModelConfig,
    OrchestrationTemplate,
    PromptTemplate,
    Provider,
    Service,
    Tool,
)
from kai_platform.api.schema import requires_one_of
from kai_platform.api.serializers import JSONObjectField, KaiModelSerializer, KaiSerializer
from kai_platform.llm import PROVIDER_TYPES


@extend_schema_field({"oneOf": [{"type": "object", "additionalProperties": True}, {"type": "string"}]})
class ConfigField(serializers.JSONField):
    """A JSON object, or a string holding JSON (parsed with line numbers on error by the service)."""


# --- agents ------------------------------------------------------------------------------------

class AgentSerializer(KaiModelSerializer):
    model = serializers.CharField(write_only=True, required=False, allow_blank=True, max_length=200,
                                  help_text="Alias of `llm`.")
    tools = serializers.ListField(child=serializers.CharField(max_length=100), required=False, max_length=50)
    config = ConfigField(required=False)
    status = serializers.ChoiceField(choices=AgentStatus.choices, required=False)

    class Meta:
        model = Agent
        fields = ["id", "agent_number", "name", "description", "role", "goal", "backstory", "llm", "model", "tools",
                  "allow_delegation", "verbose", "agent_type", "config", "config_yaml", "status", "last_error",
                  "is_active", "voice_enabled", "version", "execution_count", "average_execution_time",
                  "last_execution", "last_heartbeat", "organization", "created_by", "created_at", "updated_at"]
        read_only_fields = ["id", "agent_number", "last_error", "version", "execution_count", "average_execution_time",
                            "last_execution", "last_heartbeat", "organization", "created_by", "created_at",
                            "updated_at"]
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
_RESERVED_KEYS = frozenset({"id", "organization", "organization_id", "created_by", "created_at", "updated_at",
                            "status", "execution_count", "average_execution_time", "last_execution"})


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
            raise serializers.ValidationError({key: ["A server-owned field; to pass it as input, wrap the object: "
                                                     "{input_data: {...}}."] for key in reserved})
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
        return {"anyOf": [prompt, {
            "type": "object", "minProperties": 1, "additionalProperties": True,
            "not": {"anyOf": [{"required": [key]} for key in sorted(_RESERVED_KEYS)]},
            "description": "Seed 003's free input object (`agent.run(**input_data)`): its `prompt`/`input`/`query`/"
                           "`question`/`message`/`text`/`task` text is the prompt, else the whole object as JSON."}]}


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


class MemorySerializer(KaiModelSerializer):
    type = serializers.CharField(write_only=True, required=False, max_length=50, help_text="Alias of memory_type.")
    content = serializers.JSONField()
    tags = serializers.ListField(child=serializers.CharField(max_length=64), required=False, max_length=20)
    ttl = serializers.IntegerField(write_only=True, required=False, min_value=1, allow_null=True,
                                   help_text="Seconds until the entry expires.")
    agent_number = serializers.IntegerField(write_only=True, required=False, help_text="Ignored (the URL names the agent).")

    class Meta:
        model = AgentMemory
        fields = ["id", "agent", "memory_type", "type", "content", "tags", "ttl", "agent_number", "expires_at",
                  "created_at"]
        read_only_fields = ["id", "agent", "expires_at", "created_at"]
        extra_kwargs = {"memory_type": {"required": False}}

    def validate(self, attrs):
        alias = attrs.pop("type", None)
        attrs.pop("agent_number", None)
        if alias and not attrs.get("memory_type"):
            attrs["memory_type"] = alias
        return attrs


# --- credentials -------------------------------------------------------------------------------

class CredentialDataSerializer(KaiSerializer):
    value = serializers.CharField(max_length=20_000, trim_whitespace=False)
    additional_fields = serializers.DictField(child=serializers.CharField(max_length=5000), required=False)


class CredentialMetadataSerializer(KaiSerializer):
    description = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)
    auto_rotate = serializers.BooleanField(required=False)
    last_used = serializers.DateTimeField(read_only=True, allow_null=True)
    usage_count = serializers.IntegerField(read_only=True)


class CredentialSerializer(KaiModelSerializer):
    """Seed 002 credentials. The value is write-only; answers show ``masked_value`` only."""

    credential_data = CredentialDataSerializer(write_only=True, required=True)  # PUT/PATCH are partial
    metadata = CredentialMetadataSerializer(required=False)
    masked_value = serializers.CharField(source="masked", read_only=True)
    biometric_verification = JSONObjectField(
        write_only=True, required=False,
        help_text="Seed 002 BiometricCredential (or a WebAuthn assertion) answering this session's "
                  "auth/biometric/verify challenge: the step-up for this call where the organization requires it.")

    class Meta:
        model = Credential
        fields = ["id", "name", "service_name", "credential_type", "credential_data", "masked_value",
                  "encryption_key_id", "metadata", "biometric_verification", "created_by", "created_at", "updated_at"]
        read_only_fields = ["id", "encryption_key_id", "created_by", "created_at", "updated_at"]
        extra_kwargs = {"name": {"required": False}}

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["metadata"] = {"description": instance.description, "expires_at": instance.expires_at,
                            "last_used": instance.last_used, "usage_count": instance.usage_count,
                            "auto_rotate": instance.auto_rotate}
        return data

    def validate(self, attrs):
        attrs.pop("biometric_verification", None)
        if self.instance is None:
            if "credential_data" not in attrs:
                raise serializers.ValidationError({"credential_data": ["This field is required."]})
            if not attrs.get("service_name"):
                raise serializers.ValidationError({"service_name": ["This field is required."]})
        return attrs

    @staticmethod
    def to_changes(attrs: dict) -> dict:
        changes = {k: v for k, v in attrs.items() if k in ("name", "service_name", "credential_type")}
        data = attrs.get("credential_data") or {}
        if "value" in data:
            changes["value"] = data["value"]
        if "additional_fields" in data:
            changes["additional_fields"] = data["additional_fields"]
        changes.update(attrs.get("metadata") or {})
        return changes


class ExternalApiKeySerializer(KaiModelSerializer):
    """Seed 001 ``api-keys``: keys for external services, on the same encrypted Credential model."""

    service = serializers.CharField(source="service_name", max_length=100, required=False)
    key = serializers.CharField(write_only=True, required=False, max_length=20_000, trim_whitespace=False)
    key_preview = serializers.CharField(source="masked", read_only=True)

    class Meta:
        model = Credential
        fields = ["id", "name", "service", "key", "key_preview", "description", "expires_at", "last_used",
                  "usage_count", "encryption_key_id", "created_at", "updated_at"]
        read_only_fields = ["id", "last_used", "usage_count", "encryption_key_id", "created_at", "updated_at"]

    def validate(self, attrs):
        if self.instance is None:
            missing = [f for f in ("name", "key") if not attrs.get(f)]
            if missing:
                raise serializers.ValidationError({f: ["This field is required."] for f in missing})
        return attrs


class CredentialValueSerializer(KaiSerializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    service_name = serializers.CharField()
    credential_type = serializers.ChoiceField(choices=CredentialType.choices)
    value = serializers.CharField()
    additional_fields = serializers.DictField()


class CredentialVerifyRequestSerializer(KaiSerializer):
    credential_id = serializers.UUIDField()
    value = serializers.CharField(required=False, trim_whitespace=False, help_text="Check that this is the stored value.")
    biometric_verification = JSONObjectField(required=False)


class CredentialVerifyResponseSerializer(KaiSerializer):
    credential_id = serializers.UUIDField()
    valid = serializers.BooleanField()
    decryptable = serializers.BooleanField()
    expired = serializers.BooleanField()
    matches = serializers.BooleanField(allow_null=True)
    encryption_key_id = serializers.CharField()
    current_key = serializers.BooleanField()


class BackupRequestSerializer(KaiSerializer):
    passphrase = serializers.CharField(min_length=12, max_length=1000, trim_whitespace=False)


class BackupKdfSerializer(KaiSerializer):
    """The scrypt parameters a backup was sealed with; a restore takes only costs the server can pay
    (``n`` a power of two up to 2**17: 128 MiB at r=8)."""

    name = serializers.ChoiceField(choices=["scrypt"])
    n = serializers.IntegerField(min_value=2, max_value=2 ** 17)
    r = serializers.IntegerField(min_value=1, max_value=64)
    p = serializers.IntegerField(min_value=1, max_value=16)
    salt = serializers.CharField(max_length=200)

    def validate_n(self, value):
        if value & (value - 1):
            raise serializers.ValidationError("Must be a power of two.")
        return value


class BackupResponseSerializer(KaiSerializer):
    backup = serializers.CharField()
    count = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    kdf = BackupKdfSerializer()
    cipher = serializers.CharField()


class RestoreRequestSerializer(KaiSerializer):
    backup = serializers.CharField()
    kdf = BackupKdfSerializer()
    passphrase = serializers.CharField(trim_whitespace=False)
    overwrite = serializers.BooleanField(default=False)


class RestoreResponseSerializer(KaiSerializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    skipped = serializers.IntegerField()


# --- providers & models ------------------------------------------------------------------------

class ProviderSerializer(KaiModelSerializer):
    provider = serializers.ChoiceField(source="provider_type", choices=[(p, p) for p in PROVIDER_TYPES])
    api_key = serializers.CharField(write_only=True, required=False, max_length=20_000, trim_whitespace=False)
    api_key_masked = serializers.SerializerMethodField()
    current_spend = serializers.SerializerMethodField()

    class Meta:
        model = Provider
        fields = ["id", "name", "provider", "base_url", "api_key", "api_key_masked", "credential", "default_model",
                  "api_version", "timeout_seconds", "budget_limit", "current_spend", "is_default", "is_active", "config",
                  "last_validated_at", "last_validation_ok", "last_validation_error", "created_by", "created_at",
                  "updated_at"]
        read_only_fields = ["id", "last_validated_at", "last_validation_ok", "last_validation_error", "created_by",
                            "created_at", "updated_at"]
        extra_kwargs = {"timeout_seconds": {"min_value": 0.1, "max_value": 600},
                        "budget_limit": {"min_value": 0}}

    def get_fields(self):
        fields = super().get_fields()
        request = self.context.get("request")
        org = getattr(getattr(request, "auth", None), "organization", None)
        if org is not None:
            fields["credential"].queryset = Credential.objects.for_org(org)
        else:
            fields["credential"].queryset = Credential.objects.none()
        return fields

    def get_api_key_masked(self, obj) -> str | None:
        return obj.credential.masked if obj.credential_id and obj.credential else None

    @extend_schema_field(serializers.DecimalField(max_digits=20, decimal_places=6))  # rendered as a string
    def get_current_spend(self, obj):
        value = getattr(obj, "month_spend", None)
        return str(value) if value is not None else "0"


class ProviderUsageSerializer(KaiSerializer):
    provider_id = serializers.UUIDField()
    since = serializers.DateField()
    days = serializers.IntegerField()
    totals = serializers.DictField()
    by_day = serializers.ListField(child=serializers.DictField())
    budget_limit = serializers.DecimalField(max_digits=12, decimal_places=4, allow_null=True)
    current_spend = serializers.DecimalField(max_digits=14, decimal_places=6)
    budget_remaining = serializers.DecimalField(max_digits=14, decimal_places=6, allow_null=True)


class ProviderValidateSerializer(KaiSerializer):
    valid = serializers.BooleanField()
    provider_id = serializers.UUIDField()
    model = serializers.CharField()
    latency_ms = serializers.FloatField()


class ModelConfigSerializer(KaiModelSerializer):
    provider = serializers.CharField(write_only=True, max_length=100,
                                     help_text="A provider's id or name, or a provider type (openai, anthropic, …).")
    provider_id = serializers.UUIDField(read_only=True)
    provider_name = serializers.SerializerMethodField()

    class Meta:
        model = ModelConfig
        fields = ["id", "name", "provider", "provider_id", "provider_name", "provider_type", "model", "api_key_name",
                  "parameters", "is_active", "created_at", "updated_at"]
        read_only_fields = ["id", "provider_type", "created_at", "updated_at"]
        extra_kwargs = {"model": {"required": False}}

    def get_provider_name(self, obj) -> str | None:
        return obj.provider.name if obj.provider_id and obj.provider else None

    def validate(self, attrs):
        request = self.context["request"]
        org = request.auth.organization
        if "provider" in attrs:
            ref = attrs.pop("provider").strip()
            providers = Provider.objects.for_org(org)
            found = None
            try:
                found = providers.filter(pk=uuid.UUID(ref)).first()
            except ValueError:
                found = providers.filter(name=ref).first() or (
                    providers.filter(provider_type=ref).order_by("-is_default", "created_at").first())
            if found is not None:
                attrs["provider"], attrs["provider_type"] = found, found.provider_type
            elif ref in PROVIDER_TYPES:
                attrs["provider"], attrs["provider_type"] = None, ref
            else:
                raise serializers.ValidationError({"provider": [
                    f"Unknown provider {ref!r}: not a provider of this organization nor a provider type "
                    f"({', '.join(PROVIDER_TYPES)})."]})
        elif self.instance is None:
            raise serializers.ValidationError({"provider": ["This field is required."]})
        if self.instance is None and not attrs.get("model"):
            attrs["model"] = attrs.get("name", "")
        return attrs


# --- tools -------------------------------------------------------------------------------------

class ToolSerializer(KaiModelSerializer):
    configuration = JSONObjectField(required=False)
    config_schema = JSONObjectField(required=False)
    parameters_schema = JSONObjectField(required=False)

    class Meta:
        model = Tool
        fields = ["id", "name", "description", "tool_type", "configuration", "config_schema", "parameters_schema",
                  "enabled", "created_by", "created_at", "updated_at"]
        read_only_fields = ["id", "created_by", "created_at", "updated_at"]


class ToolSchemaSerializer(KaiSerializer):
    name = serializers.CharField()
    tool_type = serializers.CharField()
    config_schema = serializers.DictField()
    parameters_schema = serializers.DictField()
    configuration = serializers.DictField()


# --- templates ---------------------------------------------------------------------------------

class PromptTemplateSerializer(KaiModelSerializer):
    variables = serializers.ListField(child=serializers.CharField(max_length=100), required=False)

    class Meta:
        model = PromptTemplate
        fields = ["id", "name", "description", "template", "variables", "is_official", "created_at", "updated_at"]
        read_only_fields = ["id", "is_official", "created_at", "updated_at"]


class RenderRequestSerializer(KaiSerializer):
    variables = serializers.DictField(required=False, default=dict)


class RenderResponseSerializer(KaiSerializer):
    template_id = serializers.UUIDField()
    rendered = serializers.CharField()
    variables = serializers.ListField(child=serializers.CharField())


class AgentTemplateSerializer(KaiModelSerializer):
    class Meta:
        model = AgentTemplate
        fields = ["id", "name", "description", "category", "agent_type", "config_yaml", "is_official", "created_at",
                  "updated_at"]
        read_only_fields = ["id", "is_official", "created_at", "updated_at"]


class OrchestrationTemplateSerializer(KaiModelSerializer):
    class Meta:
        model = OrchestrationTemplate
        fields = ["id", "name", "description", "category", "pattern", "config_yaml", "is_official", "created_at",
                  "updated_at"]
        read_only_fields = ["id", "is_official", "created_at", "updated_at"]


class UseTemplateSerializer(KaiSerializer):
    name = serializers.CharField(required=False, max_length=200)
    description = serializers.CharField(required=False, allow_blank=True)


class OrchestrationUseResponseSerializer(KaiSerializer):
    created = serializers.BooleanField()
    template_id = serializers.UUIDField()
    orchestration_id = serializers.UUIDField(allow_null=True)
    orchestration = serializers.DictField()
    detail = serializers.CharField(required=False)


# --- services ----------------------------------------------------------------------------------

class ServiceListSerializer(serializers.ListSerializer):
    """Overlays liveness from Redis for the whole page in one round trip."""

    def to_representation(self, data):
        from apps.agents.selectors import heartbeats

        items = list(data.all() if hasattr(data, "all") else data)
        agent_refs = [s.ref_id for s in items if s.service_type == "agent" and s.ref_id]
        self.child.context["agent_beats"] = heartbeats(kind="agent", ids=agent_refs)
        self.child.context["service_beats"] = heartbeats(kind="service", ids=[s.pk for s in items])
        return [self.child.to_representation(item) for item in items]


class ServiceSerializer(KaiModelSerializer):
    capabilities = serializers.ListField(child=serializers.CharField(max_length=100), required=False)
    metadata = JSONObjectField(required=False)
    online = serializers.SerializerMethodField()

    class Meta:
        model = Service
        list_serializer_class = ServiceListSerializer
        fields = ["id", "name", "service_type", "ref_id", "endpoint", "capabilities", "metadata", "status", "online",
                  "last_seen", "response_time_ms", "last_error", "created_at", "updated_at"]
        read_only_fields = ["id", "ref_id", "status", "last_seen", "response_time_ms", "last_error", "created_at",
                            "updated_at"]

    def _beat(self, obj):
        from apps.agents.selectors import heartbeats

        if "service_beats" not in self.context:
            self.context["agent_beats"] = heartbeats(kind="agent", ids=[obj.ref_id] if obj.ref_id else [])
            self.context["service_beats"] = heartbeats(kind="service", ids=[obj.pk])
        beats = [self.context["service_beats"].get(str(obj.pk))]
        if obj.service_type == "agent" and obj.ref_id:
            beats.append(self.context["agent_beats"].get(str(obj.ref_id)))
        beats = [b for b in beats if b]
        return max(beats) if beats else None

    def get_online(self, obj) -> bool:
        return self._beat(obj) is not None

    def to_representation(self, instance):
        data = super().to_representation(instance)
        beat = self._beat(instance)
        if beat is not None:
            data["status"] = "degraded" if instance.status == "degraded" else "online"
            data["last_seen"] = beat
        elif instance.service_type == "agent":
            data["status"] = "offline"
        return data


@requires_one_of("agent_id", "service_id")
class HeartbeatSerializer(KaiSerializer):
    agent_id = serializers.CharField(required=False, help_text="Agent id, number or name (seed 000: 'kai-001').")
    service_id = serializers.UUIDField(required=False)
    type = serializers.CharField(required=False, help_text="'heartbeat' (seed 000 message shape).")

    def validate(self, attrs):
        if not attrs.get("agent_id") and not attrs.get("service_id"):
            raise serializers.ValidationError({"agent_id": ["Give agent_id or service_id."]})
        return attrs


class HeartbeatResponseSerializer(KaiSerializer):
    ok = serializers.BooleanField()
    kind = serializers.CharField()
    id = serializers.UUIDField()
    ttl_seconds = serializers.IntegerField()


class DiscoverResponseSerializer(KaiSerializer):
    agents = serializers.IntegerField()
    tools = serializers.IntegerField()
    providers = serializers.IntegerField()
    endpoints = serializers.IntegerField()
    created = serializers.IntegerField()


# --- deployments -------------------------------------------------------------------------------

class DeploymentSerializer(KaiModelSerializer):
    agent_id = serializers.UUIDField(read_only=True)
    api_url = serializers.SerializerMethodField()
    mcp_url = serializers.SerializerMethodField()

    class Meta:
        model = Deployment
        fields = ["id", "name", "agent_id", "orchestration_id", "channels", "status", "api_url", "mcp_url",
                  "started_at", "stopped_at", "invocation_count", "last_invoked_at", "created_by", "created_at"]
        read_only_fields = fields

    def get_api_url(self, obj) -> str:
        return f"{settings.KAI_PUBLIC_URL}/api/v1/deployments/{obj.pk}/invoke"

    def get_mcp_url(self, obj) -> str | None:
        """The deployment's MCP server (streamable HTTP), when it has the ``mcp`` channel."""
        return f"{settings.KAI_PUBLIC_URL}/mcp/deployments/{obj.pk}/" if "mcp" in (obj.channels or []) else None


@requires_one_of("agent_id", "orchestration_id")
class DeployRequestSerializer(KaiSerializer):
    agent_id = serializers.UUIDField(required=False)
    orchestration_id = serializers.UUIDField(required=False)
    name = serializers.CharField(required=False, max_length=200)
    channels = serializers.ListField(child=serializers.ChoiceField(choices=["api", "mcp"]), required=False,
                                     default=["api"])

    def validate(self, attrs):
        if not attrs.get("agent_id") and not attrs.get("orchestration_id"):
            raise serializers.ValidationError({"agent_id": ["Give agent_id (or orchestration_id)."]})
        return attrs


class DeployResponseSerializer(DeploymentSerializer):
    deployment_id = serializers.UUIDField(source="id", read_only=True)
    key = serializers.CharField(read_only=True, help_text="The deployment key, shown once.")
    cli_command = serializers.CharField(read_only=True)
    mcp_command = serializers.CharField(read_only=True, allow_null=True,
                                        help_text="Adds the deployment's MCP server to Claude Code (mcp channel only).")

    class Meta(DeploymentSerializer.Meta):
        fields = ["deployment_id", *DeploymentSerializer.Meta.fields, "key", "cli_command", "mcp_command"]
        read_only_fields = fields


class InvokeRequestSerializer(KaiSerializer):
    prompt = serializers.CharField(max_length=100_000)
    parameters = JSONObjectField(required=False)


__all__ = [name for name in dir() if name.endswith("Serializer")] + ["services"]
