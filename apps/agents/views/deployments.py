"""Services registry and deployment endpoints, with the public invoke view."""

from __future__ import annotations

from django.conf import settings
from django.shortcuts import get_object_or_404
from django.utils.text import slugify
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, status
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.agents import selectors, services
from apps.agents.models import Agent, Deployment, Service
from apps.agents.serializers import (
    AgentTestResponseSerializer,
    DeploymentSerializer,
    DeployRequestSerializer,
    DeployResponseSerializer,
    DiscoverResponseSerializer,
    HeartbeatResponseSerializer,
    HeartbeatSerializer,
    InvokeRequestSerializer,
    ServiceSerializer,
)
from apps.agents.views.common import BUILDER_ROLES, UUID_LOOKUP
from kai_platform.api.errors import codes
from kai_platform.api.serializers import validated
from kai_platform.api.views import KaiAPIView, PublicAPIView
from kai_platform.tenancy.roles import HUMAN_ROLES
from kai_platform.tenancy.viewsets import TenantScopedViewSet, get_or_404

# --- services registry -------------------------------------------------------------------------


@extend_schema(tags=["services"])
class ServiceViewSet(TenantScopedViewSet):
    """Seed 000 services registry. Liveness comes from heartbeats cached in Redis."""

    model = Service
    serializer_class = ServiceSerializer
    lookup_value_regex = UUID_LOOKUP
    http_method_names = ["get", "post", "delete", "head", "options"]
    filterset_fields = ["service_type", "status"]
    action_roles = {"create": HUMAN_ROLES, "destroy": HUMAN_ROLES, "discover": HUMAN_ROLES}

    def perform_create(self, serializer):
        serializer.instance = services.service_create(
            organization=self.organization, actor=self.request.user, data=serializer.validated_data
        )

    def perform_destroy(self, instance):
        services.service_delete(service=instance, actor=self.request.user)

    @extend_schema(request=None, responses={200: DiscoverResponseSerializer})
    @action(detail=False, methods=["post"])
    def discover(self, request):
        return Response(services.services_discover(organization=self.organization, actor=request.user))

    @extend_schema(request=None, responses={200: ServiceSerializer})
    @action(detail=True, methods=["post"])
    def refresh(self, request, pk=None):
        service = services.service_refresh(service=self.get_object(), actor=request.user)
        return Response(ServiceSerializer(service).data)

    @extend_schema(request=HeartbeatSerializer, responses={200: HeartbeatResponseSerializer})
    @action(detail=False, methods=["post"])
    def heartbeat(self, request):
        data = validated(HeartbeatSerializer, request)
        if data.get("service_id"):
            service = get_object_or_404(self.get_queryset(), pk=data["service_id"])
            services.service_heartbeat(service=service)
            kind, obj_id = "service", service.pk
        else:
            agent = selectors.agent_by_ref(organization=self.organization, ref=data["agent_id"])
            if agent is None:
                raise exceptions.NotFound(f"No agent {data['agent_id']!r}.")
            services.agent_heartbeat(agent=agent)
            kind, obj_id = "agent", agent.pk
        return Response({"ok": True, "kind": kind, "id": obj_id, "ttl_seconds": settings.KAI_HEARTBEAT_TTL_SECONDS})


# --- deployments -------------------------------------------------------------------------------


@extend_schema(tags=["deployments"])
class DeploymentViewSet(TenantScopedViewSet):
    """Seed 003 deployments. DELETE stops the deployment and revokes its key (the row is kept)."""

    model = Deployment
    serializer_class = DeploymentSerializer
    lookup_value_regex = UUID_LOOKUP
    http_method_names = ["get", "delete", "head", "options"]
    filterset_fields = ["status", "agent"]
    action_roles = {"destroy": BUILDER_ROLES}

    @extend_schema(responses={200: DeploymentSerializer})
    def destroy(self, request, *args, **kwargs):
        deployment = services.deployment_stop(deployment=self.get_object(), actor=request.user)
        return Response(DeploymentSerializer(deployment).data)


@extend_schema(tags=["deployments"])
class DeployView(KaiAPIView):
    """Seed 003 ``deploy``: expose an agent at its own invocation URL with a deployment key (shown once)."""

    action_roles = {"post": BUILDER_ROLES}

    @extend_schema(request=DeployRequestSerializer, responses={201: DeployResponseSerializer})
    def post(self, request):
        data = validated(DeployRequestSerializer, request)
        agent = None
        if data.get("agent_id"):
            agent = get_or_404(Agent.objects.for_org(self.organization), pk=data["agent_id"])
        deployment, raw = services.deployment_create(
            organization=self.organization,
            actor=request.user,
            agent=agent,
            name=data.get("name"),
            channels=data.get("channels") or ["api"],
            orchestration_id=data.get("orchestration_id"),
        )
        body = DeploymentSerializer(deployment).data
        body.update(
            {
                "deployment_id": deployment.pk,
                "key": raw,
                "cli_command": f"curl -X POST {body['api_url']} -H 'Authorization: Bearer {raw}' "
                "-H 'Content-Type: application/json' -d '{\"prompt\": \"…\"}'",
                "mcp_command": (
                    f"claude mcp add --transport http {slugify(deployment.name) or 'kai'} "
                    f"{body['mcp_url']} --header 'Authorization: Bearer {raw}'"
                )
                if body["mcp_url"]
                else None,
            }
        )
        return Response(body, status=status.HTTP_201_CREATED)


@extend_schema(tags=["deployments"])
class DeploymentInvokeView(PublicAPIView):
    """An agent's invocation URL. Authenticated by its deployment key only
    (``Authorization: Bearer kdep_…`` or ``X-Deployment-Key``); a stopped deployment answers 401."""

    @extend_schema(
        request=InvokeRequestSerializer,
        responses={200: AgentTestResponseSerializer},
        parameters=[OpenApiParameter("X-Deployment-Key", str, OpenApiParameter.HEADER, required=False)],
        auth=[],
    )
    def post(self, request, pk):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        raw = (
            header[7:].strip()
            if header.lower().startswith("bearer ")
            else request.META.get("HTTP_X_DEPLOYMENT_KEY", "")
        )
        deployment = services.deployment_authenticate(deployment_id=pk, raw_key=raw)
        if deployment is None:
            raise exceptions.AuthenticationFailed(
                "Deployment key is invalid, or the deployment is stopped.", code=codes.UNAUTHORIZED
            )
        data = validated(InvokeRequestSerializer, request)
        status_code, body = services.deployment_invoke(
            deployment=deployment, prompt=data["prompt"], params=data.get("parameters"), channel="api"
        )
        return Response(body, status=status_code)
