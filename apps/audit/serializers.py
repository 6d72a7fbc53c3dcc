from rest_framework import serializers

from apps.audit.models import AuditEvent
from kai_platform.api.serializers import KaiModelSerializer


class AuditEventSerializer(KaiModelSerializer):
    """docs/decisions.md: ``{id, action, model, object_id, actor, before, after, request_id, created_at}``."""

    actor = serializers.SerializerMethodField()
    operation_type = serializers.SerializerMethodField()

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "action",
            "operation_type",
            "model",
            "object_id",
            "actor",
            "actor_type",
            "before",
            "after",
            "request_id",
            "ip",
            "user_agent",
            "created_at",
        ]
        read_only_fields = fields

    def get_actor(self, obj) -> dict | None:
        if obj.actor_id is None:
            return None
        return {"id": str(obj.actor_id), "email": obj.actor.email if obj.actor else None}

    def get_operation_type(self, obj) -> str:
        return operation_type(obj.action)


def operation_type(action: str) -> str:
    """``agent.create`` → ``create``; ``api_key.revoke`` → ``revoke``."""
    return action.rsplit(".", 1)[-1]
