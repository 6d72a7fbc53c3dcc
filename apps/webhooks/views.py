"""Thin views over apps.webhooks.services / selectors."""

from __future__ import annotations

import django_filters
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.webhooks import selectors, services
from apps.webhooks.models import DeliveryStatus, Webhook, WebhookDelivery
from apps.webhooks.serializers import WebhookDeliverySerializer, WebhookSerializer
from kai_platform.tenancy.roles import ADMIN_ROLES
from kai_platform.tenancy.viewsets import TenantScopedViewSet, not_offered

#: webhooks send the organization's data out: only owners/admins manage them
WRITE_ACTIONS = ("create", "update", "partial_update", "destroy", "test")


@extend_schema(tags=["webhooks"])
class WebhookViewSet(TenantScopedViewSet):
    """Outbound webhooks: a URL, the event types it receives and a signing secret (returned once,
    at creation or rotation). ``{id}/deliveries`` lists what was sent, ``{id}/test`` sends a sample."""

    model = Webhook
    serializer_class = WebhookSerializer
    filterset_fields = ["is_active"]
    action_roles = {name: ADMIN_ROLES for name in WRITE_ACTIONS}

    def scope_queryset(self, queryset):
        return selectors.webhooks_for_list(queryset=queryset)

    def _body(self, webhook, secret=None) -> dict:
        data = WebhookSerializer(self.get_queryset().get(pk=webhook.pk)).data
        if secret:
            data["secret"] = secret
        return data

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        webhook, secret = services.webhook_create(
            organization=self.organization, actor=request.user, data=dict(serializer.validated_data)
        )
        return Response(self._body(webhook, secret), status=status.HTTP_201_CREATED)

    def update(self, request, *args, **kwargs):
        webhook = self.get_object()
        serializer = self.get_serializer(webhook, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        webhook, secret = services.webhook_update(
            webhook=webhook, actor=request.user, data=dict(serializer.validated_data)
        )
        return Response(self._body(webhook, secret))

    def perform_destroy(self, instance):
        services.webhook_delete(webhook=instance, actor=self.request.user)

    @extend_schema(responses={200: WebhookDeliverySerializer(many=True)})
    @action(detail=True, methods=["get"])
    def deliveries(self, request, pk=None):
        """The webhook's deliveries, newest first (``?status=`` filters)."""
        queryset = selectors.deliveries_of(webhook=self.get_object())
        wanted = request.query_params.get("status")
        if wanted:
            if wanted not in DeliveryStatus.values:
                raise exceptions.ValidationError({"status": [f"One of {', '.join(DeliveryStatus.values)}."]})
            queryset = queryset.filter(status=wanted)
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(WebhookDeliverySerializer(page, many=True).data)

    @extend_schema(request=None, responses={202: WebhookDeliverySerializer})
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        """Send a signed ``webhook.test`` delivery now."""
        delivery = services.webhook_send_test(webhook=self.get_object(), actor=request.user)
        return Response(WebhookDeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)


class DeliveryFilter(django_filters.FilterSet):
    webhook = django_filters.UUIDFilter(field_name="webhook_id")
    status = django_filters.ChoiceFilter(choices=DeliveryStatus.choices)
    event_type = django_filters.CharFilter()

    class Meta:
        model = WebhookDelivery
        fields = ["webhook", "status", "event_type"]


@extend_schema(tags=["webhooks"])
class WebhookDeliveryViewSet(TenantScopedViewSet):
    """Every delivery of the organization's webhooks; ``{id}/replay`` sends one again."""

    model = WebhookDelivery
    serializer_class = WebhookDeliverySerializer
    filterset_class = DeliveryFilter
    http_method_names = ["get", "post", "head", "options"]
    action_roles = {"replay": ADMIN_ROLES}

    def scope_queryset(self, queryset):
        return selectors.deliveries_for_list(queryset=queryset)

    @not_offered
    def create(self, request, *args, **kwargs):
        raise exceptions.MethodNotAllowed("POST", detail="Deliveries are made by events; use webhooks/{id}/test.")

    @extend_schema(request=None, responses={202: WebhookDeliverySerializer})
    @action(detail=True, methods=["post"])
    def replay(self, request, pk=None):
        """Send this delivery's payload again, as a new delivery."""
        replay = services.delivery_replay(delivery=self.get_object(), actor=request.user)
        return Response(WebhookDeliverySerializer(replay).data, status=status.HTTP_202_ACCEPTED)
