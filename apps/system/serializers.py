from django.utils import timezone
from rest_framework import serializers

from apps.system.models import AlertSeverity, AlertStatus, ModificationType, SystemModification
from apps.system.tasks import METRICS
from kai_platform.api.schema import GIVEN, requires_one_of, schema_rules
from kai_platform.api.serializers import KaiModelSerializer, KaiSerializer, NonEmptyJSONObjectField


class SystemModificationSerializer(KaiModelSerializer):
    """Seed 002 ``SystemModification`` plus what it touched and its rollback links."""

    applied_by = serializers.SerializerMethodField()

    class Meta:
        model = SystemModification
        fields = [
            "id",
            "type",
            "description",
            "target_model",
            "target_id",
            "before_state",
            "after_state",
            "applied_by",
            "applied_at",
            "rollback_available",
            "rolled_back_at",
            "rollback_of",
            "impact_assessment",
        ]
        read_only_fields = fields

    def get_applied_by(self, obj) -> str | None:
        return str(obj.applied_by_id) if obj.applied_by_id else None


@schema_rules(
    {
        "anyOf": [  # services.AgentTarget / WorkflowTarget: these two name what they change
            {
                "properties": {
                    "type": {
                        "enum": [ModificationType.SYSTEM_SETTING.value, ModificationType.ARCHITECTURE_CHANGE.value]
                    }
                }
            },
            {"required": ["target_id"], "properties": {"target_id": GIVEN}},
        ]
    }
)
@requires_one_of("changes", "after_state")
class ModifyBodySerializer(KaiSerializer):
    """``{type, target_id?, changes, description?}``, or the ``SystemModification`` of docs/observability.md with
    ``after_state`` for ``changes`` (its server-owned fields are ignored)."""

    type = serializers.ChoiceField(choices=ModificationType.choices)
    target_id = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=64,
        help_text="The agent or workflow changed (agent_config, workflow_change).",
    )
    changes = NonEmptyJSONObjectField(
        required=False, max_bytes=65536, help_text="Fields to set; for settings a null value removes the key."
    )
    after_state = NonEmptyJSONObjectField(required=False, max_bytes=65536, help_text="Seed 002's name for `changes`.")
    description = serializers.CharField(required=False, allow_blank=True, max_length=500)
    id = serializers.CharField(read_only=True)
    before_state = serializers.JSONField(read_only=True)
    applied_by = serializers.CharField(read_only=True)
    applied_at = serializers.CharField(read_only=True)
    rollback_available = serializers.BooleanField(read_only=True)
    impact_assessment = serializers.CharField(read_only=True)

    def validate(self, attrs):
        after_state = attrs.pop("after_state", None)
        if "changes" not in attrs:
            if after_state is None:
                raise serializers.ValidationError({"changes": ["Send changes (or after_state)."]})
            attrs["changes"] = after_state
        return attrs


class RollbackBodySerializer(KaiSerializer):
    modification_id = serializers.UUIDField(
        required=False, help_text="Default: the newest modification that can still be rolled back."
    )
    force = serializers.BooleanField(
        required=False, default=False, help_text="Roll back even when the target changed since."
    )


class ConfigBodySerializer(KaiSerializer):
    settings = NonEmptyJSONObjectField(max_bytes=65536, help_text="Keys to set; a null value removes the key.")
    description = serializers.CharField(required=False, allow_blank=True, max_length=500)


class MetricsQuerySerializer(KaiSerializer):
    metric_name = serializers.ChoiceField(
        choices=list(METRICS), required=False, help_text="Omitted: the catalog of metric names."
    )
    period = serializers.ChoiceField(choices=["15m", "1h", "6h", "24h", "7d", "30d"], default="1h")
    aggregation = serializers.ChoiceField(choices=["sum", "avg", "max", "min"], required=False)


class SystemAlertBodySerializer(KaiSerializer):
    """``POST system/alerts``: the ``system_alert`` fields (docs/realtime.md)."""

    severity = serializers.ChoiceField(choices=AlertSeverity.choices, default=AlertSeverity.WARNING)
    type = serializers.RegexField(
        r"^[a-z][a-z0-9_]{0,63}$",
        required=False,
        default="operator_notice",
        help_text="What happened, snake_case (e.g. service_unavailable).",
    )
    message = serializers.CharField(max_length=1000)
    affected_components = serializers.ListField(
        child=serializers.CharField(max_length=64), max_length=50, required=False, default=list
    )
    status = serializers.ChoiceField(choices=AlertStatus.choices, default=AlertStatus.INVESTIGATING)
    estimated_resolution = serializers.DateTimeField(required=False, allow_null=True, default=None)


class SystemAlertSerializer(KaiSerializer):
    alert_id = serializers.CharField()
    severity = serializers.CharField()
    type = serializers.CharField()
    message = serializers.CharField()
    affected_components = serializers.ListField(child=serializers.CharField())
    status = serializers.CharField()
    estimated_resolution = serializers.DateTimeField(allow_null=True)
    organizations_reached = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class MaintenanceBodySerializer(KaiSerializer):
    """``POST system/maintenance``."""

    enabled = serializers.BooleanField()
    message = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    until = serializers.DateTimeField(
        required=False, allow_null=True, default=None, help_text="Expected end; maintenance ends by itself then."
    )
    disconnect_seconds = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        min_value=0,
        max_value=3600,
        help_text="Warn hub sockets and close them (1001) this many seconds later.",
    )

    def validate_until(self, value):
        if value is not None and value <= timezone.now():
            raise serializers.ValidationError("must be in the future")
        return value


class MaintenanceSerializer(KaiSerializer):
    enabled = serializers.BooleanField()
    message = serializers.CharField()
    until = serializers.DateTimeField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    retry_after = serializers.IntegerField(allow_null=True)
