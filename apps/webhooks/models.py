"""Outbound webhooks: per-organization subscriptions to platform events, and every delivery made
(signed, retried with exponential backoff, recorded, replayable)."""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models

from kai_platform.tenancy.models import TenantModel

#: the event types a webhook may subscribe to (internal dotted names, as on the hub)
WEBHOOK_EVENTS = (
    "execution.completed",
    "execution.failed",
    "execution.cancelled",
    "execution.waiting_for_approval",
    "approval.requested",
    "approval.resolved",
    "schedule.fired",
    "agent.status_changed",
    "workflow.completed",
)
TEST_EVENT = "webhook.test"


class Webhook(TenantModel):
    name = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    url = models.URLField(max_length=2000)
    events = ArrayField(models.CharField(max_length=64), default=list, blank=True)
    secret_encrypted = models.TextField(editable=False, help_text="MultiFernet token (apps.agents.crypto).")
    secret_key_id = models.CharField(max_length=16, blank=True, editable=False)
    secret_hint = models.CharField(max_length=32, blank=True, editable=False)
    is_active = models.BooleanField(default=True)

    class Meta(TenantModel.Meta):
        indexes = [models.Index(fields=["organization", "is_active"], name="webhook_org_active")]

    def __str__(self) -> str:
        return self.name or self.url


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERING = "delivering", "Delivering"
    RETRYING = "retrying", "Retrying (waiting for the next attempt)"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class WebhookDelivery(TenantModel):
    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.BigIntegerField(null=True, blank=True, help_text="The Event (hub seq) delivered, if any.")
    event_type = models.CharField(max_length=100)
    payload = models.JSONField(default=dict)
    status = models.CharField(
        max_length=12, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING, editable=False
    )
    attempts = models.PositiveIntegerField(default=0, editable=False)
    response_status = models.PositiveIntegerField(null=True, blank=True, editable=False)
    latency_ms = models.FloatField(null=True, blank=True, editable=False)
    error = models.TextField(blank=True, editable=False)
    response_body = models.TextField(blank=True, editable=False, help_text="The first 2 KB of the last answer.")
    history = models.JSONField(
        default=list,
        blank=True,
        editable=False,
        help_text="Every attempt: {attempt, at, status_code, latency_ms, error}.",
    )
    next_attempt_at = models.DateTimeField(null=True, blank=True, editable=False)
    delivered_at = models.DateTimeField(null=True, blank=True, editable=False)
    replay_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replays", editable=False
    )

    class Meta(TenantModel.Meta):
        indexes = [
            models.Index(fields=["webhook", "-created_at"], name="delivery_webhook_created"),
            models.Index(fields=["status", "next_attempt_at"], name="delivery_status_next"),
        ]
        constraints = [
            # one delivery per (webhook, event); replays are extra deliveries on purpose
            models.UniqueConstraint(
                fields=["webhook", "event_id"],
                name="uniq_webhook_event_delivery",
                condition=models.Q(event_id__isnull=False, replay_of__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} → {self.webhook_id} ({self.status})"
