"""Serializers of the webhooks app. The secret is write-only, shown once (create / rotate)."""

from __future__ import annotations

from rest_framework import serializers

from apps.webhooks.models import WEBHOOK_EVENTS, Webhook, WebhookDelivery
from kai_platform.api.serializers import HttpURLField, KaiModelSerializer


class WebhookSerializer(KaiModelSerializer):
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=WEBHOOK_EVENTS),
        allow_empty=False,
        min_length=1,
        help_text=f"Any of: {', '.join(WEBHOOK_EVENTS)}.",
    )
    secret = serializers.CharField(
        write_only=True,
        required=False,
        min_length=16,
        max_length=200,
        help_text="Signing secret; generated when omitted. Returned once.",
    )
    rotate_secret = serializers.BooleanField(
        write_only=True, required=False, help_text="On update: generate a new secret (returned once)."
    )
    failed_deliveries = serializers.IntegerField(read_only=True, required=False)
    url = HttpURLField(
        max_length=Webhook._meta.get_field("url").max_length,
        help_text="Where deliveries are POSTed: an http or https URL.",
    )

    class Meta:
        model = Webhook
        fields = [
            "id",
            "name",
            "description",
            "url",
            "events",
            "is_active",
            "secret",
            "rotate_secret",
            "secret_hint",
            "failed_deliveries",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "secret_hint", "failed_deliveries", "created_at", "updated_at"]


class WebhookDeliverySerializer(serializers.ModelSerializer):
    webhook_id = serializers.UUIDField(read_only=True)
    replay_of_id = serializers.UUIDField(read_only=True, allow_null=True)

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "webhook_id",
            "event_id",
            "event_type",
            "status",
            "attempts",
            "response_status",
            "latency_ms",
            "error",
            "response_body",
            "history",
            "next_attempt_at",
            "delivered_at",
            "replay_of_id",
            "payload",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields
