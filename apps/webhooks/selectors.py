"""Reads of the webhooks app."""

from __future__ import annotations

import uuid

from django.db.models import Count, Q

from apps.webhooks.models import DeliveryStatus, Webhook, WebhookDelivery


def webhooks_for_list(*, queryset):
    return queryset.annotate(failed_deliveries=Count("deliveries", filter=Q(deliveries__status=DeliveryStatus.FAILED)))


def deliveries_of(*, webhook):
    return WebhookDelivery.objects.for_org(webhook.organization_id).filter(webhook=webhook).order_by("-created_at")


def deliveries_for_list(*, queryset):
    return queryset.select_related("webhook")


def webhook_by_reference(*, organization, reference: str):
    """The organization's active webhook with this id, else the oldest active one with this name; or None."""
    hooks = Webhook.objects.for_org(organization).filter(is_active=True)
    try:
        return hooks.filter(pk=uuid.UUID(str(reference))).first()
    except ValueError:
        return hooks.filter(name=reference).order_by("created_at").first()
