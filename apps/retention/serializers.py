from __future__ import annotations

from rest_framework import serializers

from apps.retention.models import KINDS, Keep
from apps.retention.services import audit_min_days
from kai_platform.api.serializers import KaiSerializer

MAX_DAYS = 3650


def _days(help_text: str, min_value: int = 1):
    return serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=min_value,
        max_value=MAX_DAYS,
        help_text=f"Days to keep {help_text}; null: the plan's default.",
        error_messages={"min_value": "Kept at least {min_value} days."},
    )


class RetentionPolicySerializer(KaiSerializer):
    executions_days = _days(KINDS["executions_days"])
    events_days = _days(KINDS["events_days"])
    usage_days = _days(KINDS["usage_days"])
    audit_days = _days(KINDS["audit_days"])
    webhook_deliveries_days = _days(KINDS["webhook_deliveries_days"])
    files_days = _days(KINDS["files_days"])
    keep = serializers.ChoiceField(choices=Keep.choices, required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # the audit floor is a deployment setting (KAI_AUDIT_MIN_DAYS): the field, and so the OpenAPI
        # document's minimum, is made per instance
        self.fields["audit_days"] = _days(KINDS["audit_days"], min_value=audit_min_days())
