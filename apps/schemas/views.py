"""Thin views over apps.schemas.services / selectors."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.schemas import selectors, services
from apps.schemas.models import JsonSchema
from apps.schemas.serializers import JsonSchemaSerializer, JsonSchemaVersionSerializer
from kai_platform.tenancy.roles import HUMAN_ROLES
from kai_platform.tenancy.viewsets import TenantScopedViewSet


@extend_schema(tags=["schemas"])
class JsonSchemaViewSet(TenantScopedViewSet):
    """JSON Schemas the organization keeps for structured output: crew tasks name one in
    ``output_json`` / ``output_pydantic`` (``name`` or ``name@<version>``). Changing ``schema``
    makes a new version; ``{id}/versions`` lists them all."""

    model = JsonSchema
    serializer_class = JsonSchemaSerializer
    filterset_fields = ["name"]
    action_roles = {name: HUMAN_ROLES for name in ("create", "update", "partial_update", "destroy")}

    def scope_queryset(self, queryset):
        return selectors.schemas_for_list(queryset=queryset)

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        row = services.json_schema_create(
            organization=self.organization, actor=request.user, data=dict(serializer.validated_data)
        )
        return Response(JsonSchemaSerializer(row).data, status=status.HTTP_201_CREATED)

    def update(self, request, *args, **kwargs):
        row = self.get_object()
        serializer = self.get_serializer(row, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        row = services.json_schema_update(json_schema=row, actor=request.user, data=dict(serializer.validated_data))
        return Response(JsonSchemaSerializer(row).data)

    def perform_destroy(self, instance):
        services.json_schema_delete(json_schema=instance, actor=self.request.user)

    @extend_schema(responses={200: JsonSchemaVersionSerializer(many=True)})
    @action(detail=True, methods=["get"])
    def versions(self, request, pk=None):
        """Every version of the schema, newest first."""
        page = self.paginate_queryset(selectors.versions_of(json_schema=self.get_object()))
        return self.get_paginated_response(JsonSchemaVersionSerializer(page, many=True).data)
