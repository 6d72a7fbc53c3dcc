"""Reads of the webhooks app."""
from __future__ import annotations

from django.db.models import Count, Q

from apps.webhooks.models import DeliveryStatus, WebhookDelivery


def webhooks_for_list(*, queryset):
    return queryset.annotate(failed_deliveries=Count("deliveries", filter=Q(deliveries__status=DeliveryStatus.FAILED)))


def deliveries_of(*, webhook):
    return WebhookDelivery.objects.for_org(webhook.organization_id).filter(webhook=webhook).order_by("-created_at")


def deliveries_for_list(*, queryset):
    return queryset.select_related("webhook")
