"""Serializers of the approvals app. Everything but the answer is server-owned."""

from __future__ import annotations

from rest_framework import serializers

from apps.approvals.models import Approval
from kai_platform.api.serializers import KaiSerializer


class ApprovalSerializer(serializers.ModelSerializer):
    execution_id = serializers.UUIDField(read_only=True, allow_null=True)
    execution_status = serializers.SerializerMethodField()
    assignee_user_id = serializers.UUIDField(read_only=True, allow_null=True)
    resolved_by_id = serializers.UUIDField(read_only=True, allow_null=True)

    class Meta:
        model = Approval
        fields = [
            "id",
            "source",
            "status",
            "question",
            "proposed",
            "execution_id",
            "execution_status",
            "workflow_run_id",
            "step_id",
            "assignee_role",
            "assignee_user_id",
            "deadline",
            "default_action",
            "edited_value",
            "feedback",
            "resolved_by_id",
            "resolved_at",
            "timed_out",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_execution_status(self, obj) -> str | None:
        return obj.execution.status if obj.execution_id and obj.execution else None


class ApproveSerializer(KaiSerializer):
    value = serializers.JSONField(
        required=False,
        allow_null=True,
        help_text="Replaces the proposed output (a task's text, a tool call's arguments).",
    )
    edited_value = serializers.JSONField(required=False, allow_null=True, help_text="Alias of `value`.")
    feedback = serializers.CharField(required=False, allow_blank=True, max_length=10000)


class RejectSerializer(KaiSerializer):
    feedback = serializers.CharField(required=False, allow_blank=True, max_length=10000)
    reason = serializers.CharField(required=False, allow_blank=True, max_length=10000, help_text="Alias of `feedback`.")
