"""Thin views over apps.quotas.selectors: the organization's quotas and the refusals kept for history."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from apps.quotas import selectors
from apps.quotas.models import QuotaRefusal
from apps.quotas.serializers import QuotaRefusalSerializer, QuotaStatusSerializer
from kai_platform.api.views import KaiAPIView
from kai_platform.tenancy.viewsets import READ_ONLY, TenantScopedViewSet


@extend_schema(tags=["runtime"])
class QuotaStatusView(KaiAPIView):
    """The organization's plan, its limits (custom ones marked) and each quota's sliding window now;
    the same numbers as ``usage.quotas``."""

    @extend_schema(
        responses={
            200: inline_serializer(
                "QuotaOverview",
                {
                    "plan": serializers.CharField(),
                    "quotas": serializers.DictField(child=QuotaStatusSerializer()),
                },
            )
        }
    )
    def get(self, request):
        quotas = selectors.quota_status(organization=self.organization)
        plan = next(iter(quotas.values()))["plan"] if quotas else None
        return Response({"plan": plan, "quotas": quotas})


@extend_schema(tags=["runtime"])
class QuotaRefusalViewSet(TenantScopedViewSet):
    """Runs refused by a quota with nobody to answer (scheduled ticks):
    ``?source=schedule&source_id=<schedule id>`` is that schedule's refused ticks."""

    model = QuotaRefusal
    serializer_class = QuotaRefusalSerializer
    http_method_names = READ_ONLY
    filterset_fields = ["quota", "source", "source_id"]

    def scope_queryset(self, queryset):
        return queryset.order_by("-created_at")
