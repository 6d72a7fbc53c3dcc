"""Serializers of the services registry and of deployments."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import serializers

from apps.agents.models import Deployment, Service
from apps.agents.selectors import heartbeats
from kai_platform.api.schema import requires_one_of
from kai_platform.api.serializers import JSONObjectField, KaiModelSerializer, KaiSerializer

# --- services ----------------------------------------------------------------------------------


def _shared_context(field: serializers.Field) -> dict[str, Any]:
    """The root serializer's context, which every field of it shares: where the liveness read for a
    page is kept (drf-stubs type ``context`` as a read-only Mapping; DRF's is the root's dict)."""
    context = field.context
    if not isinstance(context, dict):
        raise TypeError(f"a serializer's context is a dict, not {type(context).__name__}")
    return context


class ServiceListSerializer(serializers.ListSerializer):
    """Overlays liveness from Redis for the whole page in one round trip."""

    child: ServiceSerializer

    def to_representation(self, data):
        items = list(data.all() if hasattr(data, "all") else data)
        agent_refs = [s.ref_id for s in items if s.service_type == "agent" and s.ref_id]
        context = _shared_context(self.child)
        context["agent_beats"] = heartbeats(kind="agent", ids=agent_refs)
        context["service_beats"] = heartbeats(kind="service", ids=[s.pk for s in items])
        return [self.child.to_representation(item) for item in items]


class ServiceSerializer(KaiModelSerializer):
    capabilities = serializers.ListField(child=serializers.CharField(max_length=100), required=False)
    metadata = JSONObjectField(required=False)
    online = serializers.SerializerMethodField()

    class Meta:
        model = Service
        list_serializer_class = ServiceListSerializer
        fields = [
            "id",
            "name",
            "service_type",
            "ref_id",
            "endpoint",
            "capabilities",
            "metadata",
            "status",
            "online",
            "last_seen",
            "response_time_ms",
            "last_error",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "id",
            "ref_id",
            "status",
            "last_seen",
            "response_time_ms",
            "last_error",
            "created_at",
            "updated_at",
        ]

    def _beat(self, obj):
        if "service_beats" not in self.context:
            context = _shared_context(self)
            context["agent_beats"] = heartbeats(kind="agent", ids=[obj.ref_id] if obj.ref_id else [])
            context["service_beats"] = heartbeats(kind="service", ids=[obj.pk])
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
    agent_id = serializers.UUIDField(
        read_only=True, allow_null=True, help_text="null for an orchestration's deployment."
    )
    api_url = serializers.SerializerMethodField()
    mcp_url = serializers.SerializerMethodField()

    class Meta:
        model = Deployment
        fields = [
            "id",
            "name",
            "agent_id",
            "orchestration_id",
            "channels",
            "status",
            "api_url",
            "mcp_url",
            "started_at",
            "stopped_at",
            "invocation_count",
            "last_invoked_at",
            "created_by",
            "created_at",
        ]
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
    channels = serializers.ListField(
        child=serializers.ChoiceField(choices=["api", "mcp"]), required=False, default=["api"]
    )

    def validate(self, attrs):
        if not attrs.get("agent_id") and not attrs.get("orchestration_id"):
            raise serializers.ValidationError({"agent_id": ["Give agent_id (or orchestration_id)."]})
        return attrs


class DeployResponseSerializer(DeploymentSerializer):
    deployment_id = serializers.UUIDField(source="id", read_only=True)
    key = serializers.CharField(read_only=True, help_text="The deployment key, shown once.")
    cli_command = serializers.CharField(read_only=True)
    mcp_command = serializers.CharField(
        read_only=True, allow_null=True, help_text="Adds the deployment's MCP server to Claude Code (mcp channel only)."
    )

    class Meta(DeploymentSerializer.Meta):
        fields = ["deployment_id", *DeploymentSerializer.Meta.fields, "key", "cli_command", "mcp_command"]
        read_only_fields = fields


class InvokeRequestSerializer(KaiSerializer):
    prompt = serializers.CharField(max_length=100_000)
    parameters = JSONObjectField(required=False)
