"""Serializers of prompt, agent and orchestration templates."""

from __future__ import annotations

from rest_framework import serializers

from apps.agents.models import AgentTemplate, OrchestrationTemplate, PromptTemplate
from kai_platform.api.serializers import KaiModelSerializer, KaiSerializer

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
        fields = [
            "id",
            "name",
            "description",
            "category",
            "agent_type",
            "config_yaml",
            "is_official",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "is_official", "created_at", "updated_at"]


class OrchestrationTemplateSerializer(KaiModelSerializer):
    class Meta:
        model = OrchestrationTemplate
        fields = [
            "id",
            "name",
            "description",
            "category",
            "pattern",
            "config_yaml",
            "is_official",
            "created_at",
            "updated_at",
        ]
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
