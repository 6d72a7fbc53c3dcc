from rest_framework import serializers

from apps.quotas.models import QuotaRefusal


class QuotaStatusSerializer(serializers.Serializer):
    limit = serializers.IntegerField()
    used = serializers.IntegerField()
    remaining = serializers.IntegerField()
    window = serializers.CharField(help_text="hour | day")
    window_seconds = serializers.IntegerField()
    reset_at = serializers.DateTimeField(
        allow_null=True, help_text="When the oldest counted unit leaves the sliding window (null when none is counted)."
    )
    plan = serializers.CharField()
    custom = serializers.BooleanField(help_text="The limit is this organization's custom limit, not the plan's.")


class QuotaRefusalSerializer(serializers.ModelSerializer):
    class Meta:
        model = QuotaRefusal
        fields = (
            "id",
            "quota",
            "limit",
            "used",
            "window_seconds",
            "reset_at",
            "source",
            "source_id",
            "detail",
            "created_at",
        )
        read_only_fields = fields
