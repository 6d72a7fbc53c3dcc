from __future__ import annotations

from rest_framework import serializers

from apps.retention.models import KINDS, Keep
from apps.retention.services import audit_min_days
from kai_platform.api.serializers import KaiSerializer

MAX_DAYS = 3650


def _days(help_text: str):
    return serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=MAX_DAYS,
                                    help_text=f"Days to keep {help_text}; null: the plan's default.")


class RetentionPolicySerializer(KaiSerializer):
    executions_days = _days(KINDS["executions_days"])
    events_days = _days(KINDS["events_days"])
    usage_days = _days(KINDS["usage_days"])
    audit_days = _days(KINDS["audit_days"])
    webhook_deliveries_days = _days(KINDS["webhook_deliveries_days"])
    files_days = _days(KINDS["files_days"])
    keep = serializers.ChoiceField(choices=Keep.choices, required=False)

    def validate_audit_days(self, value):
        if value is not None and value < audit_min_days():
            raise serializers.ValidationError(f"Audit rows are kept at least {audit_min_days()} days.")
        return value
