"""Prompt, agent and orchestration template endpoints."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.agents import services
from apps.agents.models import AgentTemplate, OrchestrationTemplate, PromptTemplate
from apps.agents.serializers import (
    AgentSerializer,
    AgentTemplateSerializer,
    OrchestrationTemplateSerializer,
    OrchestrationUseResponseSerializer,
    PromptTemplateSerializer,
    RenderRequestSerializer,
    RenderResponseSerializer,
    UseTemplateSerializer,
)
from apps.agents.views.common import UUID_LOOKUP, WRITE_ACTIONS
from kai_platform.api.serializers import validated
from kai_platform.tenancy.roles import HUMAN_ROLES
from kai_platform.tenancy.viewsets import TenantScopedViewSet

# --- templates ---------------------------------------------------------------------------------


class _TemplateViewSet(TenantScopedViewSet):
    lookup_value_regex = UUID_LOOKUP
    action_roles = {a: HUMAN_ROLES for a in WRITE_ACTIONS}

    def perform_create(self, serializer):
        serializer.instance = services.template_create(
            self.model, organization=self.organization, actor=self.request.user, data=serializer.validated_data
        )

    def perform_update(self, serializer):
        serializer.instance = services.template_update(
            instance=serializer.instance, actor=self.request.user, data=serializer.validated_data
        )

    def perform_destroy(self, instance):
        services.template_delete(instance=instance, actor=self.request.user)


@extend_schema(tags=["templates"])
class PromptTemplateViewSet(_TemplateViewSet):
    """Seed 001 prompt templates with ``{variable}`` placeholders."""

    model = PromptTemplate
    serializer_class = PromptTemplateSerializer
    filterset_fields = ["is_official"]

    @extend_schema(request=RenderRequestSerializer, responses={200: RenderResponseSerializer})
    @action(detail=True, methods=["post"])
    def render(self, request, pk=None):
        template = self.get_object()
        data = validated(RenderRequestSerializer, request)
        rendered = services.template_render(template=template, variables=data.get("variables") or {})
        return Response(
            {
                "template_id": template.pk,
                "rendered": rendered,
                "variables": services.template_variables(template.template),
            }
        )


@extend_schema(tags=["templates"])
class AgentTemplateViewSet(_TemplateViewSet):
    """Seed 003 agent templates; ``?category=``; ``{id}/use`` creates an agent."""

    model = AgentTemplate
    serializer_class = AgentTemplateSerializer
    filterset_fields = ["category", "is_official", "agent_type"]
    action_roles = {**_TemplateViewSet.action_roles, "use": HUMAN_ROLES}

    @extend_schema(request=UseTemplateSerializer, responses={201: AgentSerializer})
    @action(detail=True, methods=["post"])
    def use(self, request, pk=None):
        template = self.get_object()
        data = validated(UseTemplateSerializer, request)
        agent = services.agent_template_use(
            template=template, actor=request.user, name=data.get("name"), description=data.get("description")
        )
        return Response(AgentSerializer(agent).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["templates"])
class OrchestrationTemplateViewSet(_TemplateViewSet):
    """Seed 003 orchestration templates. ``{id}/use`` creates the orchestration once the run
    engine exists; until then it answers with the configuration to create it from."""

    model = OrchestrationTemplate
    serializer_class = OrchestrationTemplateSerializer
    filterset_fields = ["category", "is_official", "pattern"]

    @extend_schema(
        request=UseTemplateSerializer,
        responses={200: OrchestrationUseResponseSerializer, 201: OrchestrationUseResponseSerializer},
    )
    @action(detail=True, methods=["post"])
    def use(self, request, pk=None):
        template = self.get_object()
        data = validated(UseTemplateSerializer, request)
        body = services.orchestration_template_use(template=template, actor=request.user, name=data.get("name"))
        return Response(body, status=status.HTTP_201_CREATED if body["created"] else status.HTTP_200_OK)
