"""Provider, model configuration and tool endpoints."""

from __future__ import annotations

import uuid

from django.db.models import DecimalField, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.agents import runtime, selectors, services
from apps.agents.models import ModelConfig, Provider, ProviderUsage, Tool
from apps.agents.serializers import (
    ModelConfigSerializer,
    ProviderSerializer,
    ProviderUsageSerializer,
    ProviderValidateSerializer,
    ToolSchemaSerializer,
    ToolSerializer,
)
from apps.agents.views.common import BUILDER_ROLES, UUID_LOOKUP, WRITE_ACTIONS
from kai_platform.api.views import KaiAPIView
from kai_platform.tenancy.viewsets import TenantScopedViewSet

# --- providers & models ------------------------------------------------------------------------


@extend_schema(tags=["providers"])
class ProviderViewSet(TenantScopedViewSet):
    model = Provider
    serializer_class = ProviderSerializer
    lookup_value_regex = UUID_LOOKUP
    filterset_fields = ["provider_type", "is_active", "is_default"]
    action_roles = {**{a: BUILDER_ROLES for a in WRITE_ACTIONS}, "validate": BUILDER_ROLES}

    def scope_queryset(self, queryset):
        month_spend = (
            ProviderUsage.objects.filter(provider=OuterRef("pk"), day__gte=selectors.month_start())
            .values("provider")
            .annotate(total=Sum("cost"))
            .values("total")
        )
        return queryset.select_related("credential").annotate(
            month_spend=Coalesce(
                Subquery(month_spend), Value(0), output_field=DecimalField(max_digits=14, decimal_places=6)
            )
        )

    def perform_create(self, serializer):
        serializer.instance = services.provider_create(
            organization=self.organization, actor=self.request.user, data=serializer.validated_data
        )

    def perform_update(self, serializer):
        services.provider_update(provider=serializer.instance, actor=self.request.user, data=serializer.validated_data)
        serializer.instance = self.get_object()

    def perform_destroy(self, instance):
        services.provider_delete(provider=instance, actor=self.request.user)

    def create(self, request, *args, **kwargs):
        response = super().create(request, *args, **kwargs)
        response.data = self.get_serializer(self.get_queryset().get(pk=response.data["id"])).data
        return response

    @extend_schema(request=None, responses={200: ProviderValidateSerializer})
    @action(detail=True, methods=["post"])
    def validate(self, request, pk=None):
        return Response(runtime.provider_validate(provider=self.get_object(), actor=request.user))

    @extend_schema(
        parameters=[OpenApiParameter("period", str, enum=["day", "week", "month"]), OpenApiParameter("days", int)],
        responses={200: ProviderUsageSerializer},
    )
    @action(detail=True, methods=["get"])
    def usage(self, request, pk=None):
        provider = self.get_object()
        period = request.query_params.get("period", "month")
        days = {"day": 1, "week": 7, "month": 30}.get(period)
        if request.query_params.get("days"):
            try:
                days = max(1, min(366, int(request.query_params["days"])))
            except ValueError:
                raise exceptions.ValidationError({"days": ["Must be an integer."]})
        if days is None:
            raise exceptions.ValidationError({"period": ["One of day, week, month."]})
        return Response(selectors.provider_usage(provider=provider, days=days))


@extend_schema(tags=["models"])
class ModelConfigViewSet(TenantScopedViewSet):
    """Seed 001 ``models``: ``models/{name}`` (an id works too)."""

    model = ModelConfig
    serializer_class = ModelConfigSerializer
    lookup_field = "name"
    lookup_value_regex = "[^/]+"
    filterset_fields = ["provider_type", "is_active"]
    action_roles = {a: BUILDER_ROLES for a in WRITE_ACTIONS}

    def scope_queryset(self, queryset):
        return queryset.select_related("provider")

    def get_object(self):
        value = self.kwargs[self.lookup_url_kwarg or self.lookup_field]
        queryset = self.filter_queryset(self.get_queryset())
        condition = Q(name=value)
        try:
            condition |= Q(pk=uuid.UUID(value))
        except ValueError:
            pass
        obj = queryset.filter(condition).first()
        if obj is None:
            raise exceptions.NotFound(f"No model named {value!r}.")
        self.check_object_permissions(self.request, obj)
        return obj

    def perform_create(self, serializer):
        serializer.instance = services.model_config_create(
            organization=self.organization, actor=self.request.user, data=serializer.validated_data
        )

    def perform_update(self, serializer):
        serializer.instance = services.model_config_update(
            config=serializer.instance, actor=self.request.user, data=serializer.validated_data
        )

    def perform_destroy(self, instance):
        services.model_config_delete(config=instance, actor=self.request.user)


# --- tools -------------------------------------------------------------------------------------


@extend_schema(tags=["tools"])
class ToolViewSet(TenantScopedViewSet):
    model = Tool
    serializer_class = ToolSerializer
    lookup_value_regex = UUID_LOOKUP
    filterset_fields = ["tool_type", "enabled"]
    action_roles = {**{a: BUILDER_ROLES for a in WRITE_ACTIONS}, "toggle_enabled": BUILDER_ROLES}

    def perform_create(self, serializer):
        serializer.instance = services.tool_create(
            organization=self.organization, actor=self.request.user, data=serializer.validated_data
        )

    def perform_update(self, serializer):
        serializer.instance = services.tool_update(
            tool=serializer.instance, actor=self.request.user, data=serializer.validated_data
        )

    def perform_destroy(self, instance):
        services.tool_delete(tool=instance, actor=self.request.user)

    @extend_schema(responses={200: ToolSerializer(many=True)})
    @action(detail=False, methods=["get"])
    def enabled(self, request):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()).filter(enabled=True))
        return self.get_paginated_response(ToolSerializer(page, many=True).data)

    @extend_schema(request=None, responses={200: ToolSerializer})
    @action(detail=True, methods=["patch"], url_path="toggle-enabled")
    def toggle_enabled(self, request, pk=None):
        return Response(ToolSerializer(services.tool_toggle(tool=self.get_object(), actor=request.user)).data)


@extend_schema(tags=["tools"])
class ToolConfigurationSchemaView(KaiAPIView):
    """Seed 001 ``tools/configurations/{tool_name}/schema``: the named tool of the request's
    organization (another organization's tool answers 404)."""

    @extend_schema(
        parameters=[OpenApiParameter("tool_name", str, OpenApiParameter.PATH)], responses={200: ToolSchemaSerializer}
    )
    def get(self, request, tool_name):
        tool = Tool.objects.for_org(self.organization).filter(name=tool_name).first()
        if tool is None:
            raise exceptions.NotFound(f"No tool named {tool_name!r}.")
        return Response(
            {
                "name": tool.name,
                "tool_type": tool.tool_type,
                "config_schema": tool.config_schema,
                "parameters_schema": tool.parameters_schema,
                "configuration": tool.configuration,
            }
        )
