"""Operator console for webhooks: subscriptions (secret never shown) and deliveries, replayable."""

from django.contrib import admin, messages
from django.db import models

from apps.webhooks import services
from apps.webhooks.models import Webhook, WebhookDelivery


@admin.register(Webhook)
class WebhookAdmin(admin.ModelAdmin):
    list_display = ("__str__", "organization", "url", "is_active", "secret_hint", "created_at")
    list_filter = ("is_active", "organization")
    search_fields = ("=id", "name", "url")
    list_select_related = ("organization",)
    readonly_fields = ("organization", "secret_hint", "secret_key_id", "created_by", "created_at", "updated_at")
    exclude = ("secret_encrypted",)
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    actions = ["send_test"]

    def has_add_permission(self, request):
        return False  # created through the API (target checked, secret returned once)

    @admin.action(description="Send a test delivery")
    def send_test(self, request, queryset):
        for webhook in queryset:
            services.webhook_send_test(webhook=webhook, actor=request.user)
        self.message_user(request, f"Queued {queryset.count()} test delivery(ies).", messages.SUCCESS)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = (
        "event_type",
        "webhook",
        "organization",
        "status",
        "attempts",
        "response_status",
        "latency_ms",
        "created_at",
        "delivered_at",
    )
    list_filter = ("status", "event_type", "organization")
    search_fields = ("=id", "=webhook__id", "event_type", "error")
    list_select_related = ("webhook", "organization")
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]
    actions = ["replay"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.action(description="Replay the selected deliveries")
    def replay(self, request, queryset):
        for delivery in queryset:
            services.delivery_replay(delivery=delivery, actor=request.user)
        self.message_user(request, f"Queued {queryset.count()} replay(s).", messages.SUCCESS)
