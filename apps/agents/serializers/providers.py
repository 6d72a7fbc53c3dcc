"""Serializers of providers, model configurations and tools."""

from __future__ import annotations

import uuid
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.agents.models import Credential, ModelConfig, Provider, Tool
from kai_platform.api.schema import schema_rules
from kai_platform.api.serializers import JSONObjectField, KaiModelSerializer, KaiSerializer
from kai_platform.llm import PROVIDER_TYPES, needs_base_url

# --- providers & models ------------------------------------------------------------------------

#: a provider of a type with no endpoint of its own (azure, vllm, databricks, openai_compatible) names its
#: base_url in the same body (a create, or an update that sets the type); validate() checks it
BASE_URL_RULE = {
    "anyOf": [
        {"properties": {"provider": {"enum": [p for p in PROVIDER_TYPES if not needs_base_url(p)]}}},
        {"required": ["base_url"], "properties": {"base_url": {"minLength": 1}}},
    ]
}


@schema_rules(BASE_URL_RULE, partial=(BASE_URL_RULE,))
class ProviderSerializer(KaiModelSerializer):
    provider = serializers.ChoiceField(source="provider_type", choices=[(p, p) for p in PROVIDER_TYPES])
    api_key = serializers.CharField(write_only=True, required=False, max_length=20_000, trim_whitespace=False)
    api_key_masked = serializers.SerializerMethodField()
    current_spend = serializers.SerializerMethodField()
    config = JSONObjectField(
        required=False, help_text="Provider settings: `parameters` (an object) are its models' default parameters."
    )

    class Meta:
        model = Provider
        fields = [
            "id",
            "name",
            "provider",
            "base_url",
            "api_key",
            "api_key_masked",
            "credential",
            "default_model",
            "api_version",
            "timeout_seconds",
            "budget_limit",
            "current_spend",
            "is_default",
            "is_active",
            "config",
            "last_validated_at",
            "last_validation_ok",
            "last_validation_error",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "id",
            "last_validated_at",
            "last_validation_ok",
            "last_validation_error",
            "created_by",
            "created_at",
            "updated_at",
        ]
        extra_kwargs = {"timeout_seconds": {"min_value": 0.1, "max_value": 600}, "budget_limit": {"min_value": 0}}

    def get_fields(self):
        # Any: drf-stubs declare RelatedField.queryset as a Manager (a descriptor), which refuses assignment
        fields: dict[str, Any] = super().get_fields()
        request = self.context.get("request")
        org = getattr(getattr(request, "auth", None), "organization", None)
        if org is not None:
            fields["credential"].queryset = Credential.objects.for_org(org)
        else:
            fields["credential"].queryset = Credential.objects.none()
        return fields

    def validate_config(self, value):
        if not isinstance(value.get("parameters", {}), dict):
            raise serializers.ValidationError({"parameters": ["Must be a JSON object."]})
        return value

    def validate(self, attrs):
        attrs = super().validate(attrs)
        provider_type = attrs.get("provider_type", getattr(self.instance, "provider_type", ""))
        # a body that sets the type names the base_url too; otherwise the stored one counts
        stored = "" if "provider_type" in attrs else getattr(self.instance, "base_url", "")
        if needs_base_url(provider_type) and not attrs.get("base_url", stored):
            raise serializers.ValidationError({"base_url": [f"A {provider_type} provider needs a base_url."]})
        return attrs

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
    provider = serializers.CharField(
        write_only=True, max_length=100, help_text="A provider's id or name, or a provider type (openai, anthropic, …)."
    )
    provider_id = serializers.UUIDField(read_only=True)
    provider_name = serializers.SerializerMethodField()
    parameters = JSONObjectField(required=False)

    class Meta:
        model = ModelConfig
        fields = [
            "id",
            "name",
            "provider",
            "provider_id",
            "provider_name",
            "provider_type",
            "model",
            "api_key_name",
            "parameters",
            "is_active",
            "created_at",
            "updated_at",
        ]
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
                    providers.filter(provider_type=ref).order_by("-is_default", "created_at").first()
                )
            if found is not None:
                attrs["provider"], attrs["provider_type"] = found, found.provider_type
            elif ref in PROVIDER_TYPES:
                attrs["provider"], attrs["provider_type"] = None, ref
            else:
                raise serializers.ValidationError(
                    {
                        "provider": [
                            f"Unknown provider {ref!r}: not a provider of this organization nor a provider type "
                            f"({', '.join(PROVIDER_TYPES)})."
                        ]
                    }
                )
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
        fields = [
            "id",
            "name",
            "description",
            "tool_type",
            "configuration",
            "config_schema",
            "parameters_schema",
            "enabled",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_by", "created_at", "updated_at"]


class ToolSchemaSerializer(KaiSerializer):
    name = serializers.CharField()
    tool_type = serializers.CharField()
    config_schema = serializers.DictField()
    parameters_schema = serializers.DictField()
    configuration = serializers.DictField()
