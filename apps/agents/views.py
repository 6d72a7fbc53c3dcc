"""Thin views over apps.agents services/selectors."""
from __future__ import annotations

import uuid

from django.db.models import DecimalField, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.text import slugify
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, status
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.agents import calls, runtime, selectors, services
from apps.agents.models import (
    Agent,
    AgentStatus,
    AgentTemplate,
    AgentVersion,
    Credential,
    CredentialType,
    Deployment,
    ModelConfig,
    OrchestrationTemplate,
    PromptTemplate,
    Provider,
    ProviderUsage,
    Service,
    Tool,
)
from apps.agents.serializers import (
    AgentSerializer,
    AgentStatusSerializer,
    AgentTemplateSerializer,
    AgentTestRequestSerializer,
    AgentTestResponseSerializer,
    AgentVersionSerializer,
    BackupRequestSerializer,
    BackupResponseSerializer,
    CredentialSerializer,
    CredentialValueSerializer,
    CredentialVerifyRequestSerializer,
    CredentialVerifyResponseSerializer,
    DeploymentSerializer,
    DeployRequestSerializer,
    DeployResponseSerializer,
    DiscoverResponseSerializer,
    ExternalApiKeySerializer,
    HeartbeatResponseSerializer,
    HeartbeatSerializer,
    InvokeRequestSerializer,
    MemorySerializer,
    ModelConfigSerializer,
    OrchestrationTemplateSerializer,
    OrchestrationUseResponseSerializer,
    PromptTemplateSerializer,
    ProviderSerializer,
    ProviderUsageSerializer,
    ProviderValidateSerializer,
    RenderRequestSerializer,
    RenderResponseSerializer,
    RestoreRequestSerializer,
    RestoreResponseSerializer,
    ServiceSerializer,
    ToolSchemaSerializer,
    ToolSerializer,
    UseTemplateSerializer,
)
from apps.events.selectors import visible_events
from apps.stepup.permissions import RequiresStepUp, check_step_up
from apps.events.serializers import EventSerializer
from kai_platform.api.errors import codes
from kai_platform.api.serializers import validated
from kai_platform.api.views import KaiAPIView, PublicAPIView
from kai_platform.tenancy.permissions import IsOrganizationMember
from kai_platform.tenancy.roles import ADMIN_ROLES, HUMAN_ROLES, Role
from kai_platform.tenancy.viewsets import TenantScopedViewSet, get_or_404

#: may define agents' building blocks (providers, secrets, tools, models, deployments)
BUILDER_ROLES = frozenset({Role.OWNER, Role.ADMIN, Role.DEVELOPER})
UUID_LOOKUP = "[0-9a-fA-F-]{32,36}"
WRITE_ACTIONS = ("create", "update", "partial_update", "destroy")


class _ServiceWrites:
    """Route a viewset's writes through the app's services."""

    def _actor(self):
        return self.request.user


# --- agents ------------------------------------------------------------------------------------

@extend_schema(tags=["agents"])
class AgentViewSet(TenantScopedViewSet):
    """Agents: CRUD (PUT is partial), status, restart, logs, memory, versions, test."""

    model = Agent
    serializer_class = AgentSerializer
    lookup_value_regex = UUID_LOOKUP
    filterset_fields = ["status", "agent_type", "is_active", "voice_enabled"]
    action_roles = {"create": HUMAN_ROLES, "restart": HUMAN_ROLES, "destroy": HUMAN_ROLES}
    #: seed 002 "agent configuration changes" need a step-up grant where the organization asks for it
    permission_classes = [IsOrganizationMember, RequiresStepUp]
    step_up_actions = {"update", "partial_update"}

    def scope_queryset(self, queryset):
        return selectors.agents_for_list(queryset=queryset)

    #: what the list answers: the serializer's readable fields, read straight from the rows
    LIST_FIELDS = [name for name in AgentSerializer.Meta.fields if name != "model"]

    def list(self, request, *args, **kwargs):
        """The page as plain rows (``agent_rows``), read as ``limit + 1`` rows by the pagination:
        one query when the list fits its page, a COUNT only when there is more."""
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(selectors.agent_rows(queryset=queryset, fields=self.LIST_FIELDS))
        return self.get_paginated_response(page)

    def perform_create(self, serializer):
        serializer.instance = services.agent_create(organization=self.organization, actor=self.request.user,
                                                    data=serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = services.agent_update(agent=serializer.instance, actor=self.request.user,
                                                    data=serializer.validated_data)

    def perform_destroy(self, instance):
        services.agent_delete(agent=instance, actor=self.request.user)

    def _status_body(self, agent):
        beats = selectors.heartbeats(kind="agent", ids=[agent.pk])
        online = str(agent.pk) in beats
        state = {AgentStatus.EXECUTING: "executing", AgentStatus.ERROR: "error",
                 AgentStatus.DISABLED: "disabled"}.get(agent.status, "idle")
        if not agent.is_active:
            state = "disabled"
        health = 1.0
        if agent.status == AgentStatus.ERROR:
            health = 0.0
        elif not agent.is_active:
            health = 0.0
        elif agent.last_heartbeat and not online:
            health = 0.5  # it used to heartbeat and has gone quiet
        return {
            "agent_id": agent.pk, "agent_number": agent.agent_number, "status": agent.status,
            "is_active": agent.is_active, "timestamp": timezone.now(),
            "last_heartbeat": beats.get(str(agent.pk)) or agent.last_heartbeat, "online": online,
            "detail": {"state": state, "last_error": agent.last_error or None, "health_score": health,
                       "resource_usage": {"api_calls_per_minute": selectors.agent_api_calls_last_minute(agent=agent),
                                          "cpu_usage": None, "memory_usage": None, "network_usage": None}},
        }

    @extend_schema(responses={200: AgentStatusSerializer})
    @action(detail=True, methods=["get"])
    def status(self, request, pk=None):
        return Response(self._status_body(self.get_object()))

    @extend_schema(request=None, responses={200: AgentStatusSerializer})
    @action(detail=True, methods=["post"])
    def restart(self, request, pk=None):
        agent = services.agent_restart(agent=self.get_object(), actor=request.user)
        return Response(self._status_body(agent))

    @extend_schema(parameters=[OpenApiParameter("after", int, description="Only events after this seq.")],
                   responses={200: EventSerializer(many=True)})
    @action(detail=True, methods=["get"])
    def logs(self, request, pk=None):
        from apps.events.models import Event

        agent = self.get_object()
        queryset = visible_events(queryset=Event.objects.for_org(self.organization).filter(agent_id=agent.pk),
                                  user=request.user, role=self.role)
        after = request.query_params.get("after")
        if after:
            try:
                queryset = queryset.filter(id__gt=int(after))
            except ValueError:
                raise exceptions.ValidationError({"after": ["Must be an integer seq."]})
        page = self.paginate_queryset(queryset.order_by("id"))
        return self.get_paginated_response(EventSerializer(page, many=True).data)

    @extend_schema(methods=["GET"], parameters=[
        OpenApiParameter("type", str, description="memory_type"), OpenApiParameter("memory_type", str),
        OpenApiParameter("tags", str, description="Comma-separated; entries carrying all of them."),
        OpenApiParameter("since", OpenApiTypes.DATETIME)], responses={200: MemorySerializer(many=True)})
    @extend_schema(methods=["POST"], request=MemorySerializer, responses={201: MemorySerializer})
    @action(detail=True, methods=["get", "post"])
    def memory(self, request, pk=None):
        agent = self.get_object()
        if request.method == "POST":
            data = validated(MemorySerializer, request)
            memory = services.memory_store(agent=agent, actor=request.user,
                                           memory_type=data.get("memory_type") or "general", content=data["content"],
                                           tags=data.get("tags") or [], ttl=data.get("ttl"))
            return Response(MemorySerializer(memory).data, status=status.HTTP_201_CREATED)
        params = request.query_params
        since = None
        if params.get("since"):
            since = parse_datetime(params["since"])
            if since is None:
                raise exceptions.ValidationError({"since": ["Must be an ISO 8601 date-time."]})
        tags = [t.strip() for t in params.get("tags", "").split(",") if t.strip()]
        queryset = selectors.memory_query(agent=agent, memory_type=params.get("type") or params.get("memory_type"),
                                          tags=tags, since=since)
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(MemorySerializer(page, many=True).data)

    @extend_schema(responses={200: AgentVersionSerializer(many=True)})
    @action(detail=True, methods=["get"])
    def versions(self, request, pk=None):
        agent = self.get_object()
        queryset = AgentVersion.objects.for_org(self.organization).filter(agent=agent).order_by("-version")
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(AgentVersionSerializer(page, many=True).data)

    @extend_schema(request=AgentTestRequestSerializer, responses={200: AgentTestResponseSerializer})
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        """Run one prompt through the agent (a run on a worker, waited for): the answer and its
        ``execution_id``; 202 with the ``execution_id`` when the run outlasts the wait."""
        agent = self.get_object()
        data = validated(AgentTestRequestSerializer, request)
        status_code, body = calls.agent_call(agent=agent, actor=request.user, prompt=data["prompt"],
                                             params=data.get("parameters"), source="test")
        return Response(body, status=status_code)


# --- secrets -----------------------------------------------------------------------------------

@extend_schema(tags=["secrets"])
class CredentialViewSet(TenantScopedViewSet):
    """Seed 002 credentials: encrypted at rest, masked in every answer; ``{id}/value`` (owner/admin,
    after a fresh step-up) returns the clear value and is audited."""

    model = Credential
    serializer_class = CredentialSerializer
    lookup_value_regex = UUID_LOOKUP
    filterset_fields = ["service_name", "credential_type"]
    action_roles = {**{a: BUILDER_ROLES for a in WRITE_ACTIONS}, "verify": BUILDER_ROLES,
                    "value": ADMIN_ROLES, "backup": ADMIN_ROLES, "restore": ADMIN_ROLES}
    #: seed 002 credential management (store, retrieve, change, delete, backup) needs step-up where asked for
    permission_classes = [IsOrganizationMember, RequiresStepUp]
    step_up_actions = {*WRITE_ACTIONS, "value", "backup", "restore"}
    #: answers stored secrets sealed: a fresh grant whatever the setting (``value`` checks it once the
    #: credential is found, so another organization's id stays a 404)
    step_up_always_actions = {"backup"}

    def perform_create(self, serializer):
        attrs = serializer.validated_data
        changes = CredentialSerializer.to_changes(attrs)
        serializer.instance = services.credential_create(
            organization=self.organization, actor=self.request.user,
            name=changes.pop("name", None) or attrs["service_name"], service_name=changes.pop("service_name"),
            credential_type=changes.pop("credential_type", CredentialType.API_KEY), value=changes.pop("value"),
            additional_fields=changes.pop("additional_fields", None), **changes)

    def perform_update(self, serializer):
        serializer.instance = services.credential_update(credential=serializer.instance, actor=self.request.user,
                                                         changes=CredentialSerializer.to_changes(serializer.validated_data))

    def perform_destroy(self, instance):
        services.credential_delete(credential=instance, actor=self.request.user)

    @extend_schema(responses={200: CredentialValueSerializer})
    @action(detail=True, methods=["get"])
    def value(self, request, pk=None):
        credential = self.get_object()
        check_step_up(request, always=True)  # a stored secret in clear: a fresh grant, whatever the setting
        secret = services.credential_reveal(credential=credential, actor=request.user)
        return Response({"id": credential.pk, "name": credential.name, "service_name": credential.service_name,
                         "credential_type": credential.credential_type, "value": secret["value"],
                         "additional_fields": secret.get("additional_fields") or {}})

    @extend_schema(request=CredentialVerifyRequestSerializer, responses={200: CredentialVerifyResponseSerializer})
    @action(detail=False, methods=["post"])
    def verify(self, request):
        data = validated(CredentialVerifyRequestSerializer, request)
        credential = get_object_or_404(self.get_queryset(), pk=data["credential_id"])
        return Response(services.credential_verify(credential=credential, value=data.get("value")))

    @extend_schema(request=BackupRequestSerializer, responses={200: BackupResponseSerializer})
    @action(detail=False, methods=["post"])
    def backup(self, request):
        data = validated(BackupRequestSerializer, request)
        return Response(services.credentials_backup(organization=self.organization, actor=request.user,
                                                     passphrase=data["passphrase"]))

    @extend_schema(request=RestoreRequestSerializer, responses={200: RestoreResponseSerializer})
    @action(detail=False, methods=["post"])
    def restore(self, request):
        data = validated(RestoreRequestSerializer, request)
        return Response(services.credentials_restore(organization=self.organization, actor=request.user,
                                                     backup=data["backup"], kdf=data["kdf"],
                                                     passphrase=data["passphrase"], overwrite=data["overwrite"]))


@extend_schema(tags=["secrets"])
class ExternalApiKeyViewSet(TenantScopedViewSet):
    """Seed 001 ``api-keys``: the organization's keys for external services (credentials of type api_key)."""

    model = Credential
    serializer_class = ExternalApiKeySerializer
    lookup_value_regex = UUID_LOOKUP
    action_roles = {a: BUILDER_ROLES for a in WRITE_ACTIONS}
    permission_classes = [IsOrganizationMember, RequiresStepUp]
    step_up_actions = set(WRITE_ACTIONS)

    def scope_queryset(self, queryset):
        return queryset.filter(credential_type=CredentialType.API_KEY)

    def perform_create(self, serializer):
        attrs = serializer.validated_data
        serializer.instance = services.credential_create(
            organization=self.organization, actor=self.request.user, name=attrs["name"],
            service_name=attrs.get("service_name") or attrs["name"], value=attrs["key"],
            credential_type=CredentialType.API_KEY, description=attrs.get("description", ""),
            expires_at=attrs.get("expires_at"))

    def perform_update(self, serializer):
        attrs = dict(serializer.validated_data)
        if "key" in attrs:
            attrs["value"] = attrs.pop("key")
        serializer.instance = services.credential_update(credential=serializer.instance, actor=self.request.user,
                                                         changes=attrs)

    def perform_destroy(self, instance):
        services.credential_delete(credential=instance, actor=self.request.user)


# --- providers & models ------------------------------------------------------------------------

@extend_schema(tags=["providers"])
class ProviderViewSet(TenantScopedViewSet):
    model = Provider
    serializer_class = ProviderSerializer
    lookup_value_regex = UUID_LOOKUP
    filterset_fields = ["provider_type", "is_active", "is_default"]
    action_roles = {**{a: BUILDER_ROLES for a in WRITE_ACTIONS}, "validate": BUILDER_ROLES}

    def scope_queryset(self, queryset):
        month_spend = (ProviderUsage.objects.filter(provider=OuterRef("pk"), day__gte=selectors.month_start())
                       .values("provider").annotate(total=Sum("cost")).values("total"))
        return queryset.select_related("credential").annotate(
            month_spend=Coalesce(Subquery(month_spend), Value(0), output_field=DecimalField(max_digits=14, decimal_places=6)))

    def perform_create(self, serializer):
        serializer.instance = services.provider_create(organization=self.organization, actor=self.request.user,
                                                       data=serializer.validated_data)

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

    @extend_schema(parameters=[OpenApiParameter("period", str, enum=["day", "week", "month"]),
                               OpenApiParameter("days", int)], responses={200: ProviderUsageSerializer})
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
        serializer.instance = services.model_config_create(organization=self.organization, actor=self.request.user,
                                                           data=serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = services.model_config_update(config=serializer.instance, actor=self.request.user,
                                                           data=serializer.validated_data)

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
        serializer.instance = services.tool_create(organization=self.organization, actor=self.request.user,
                                                   data=serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = services.tool_update(tool=serializer.instance, actor=self.request.user,
                                                   data=serializer.validated_data)

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

    @extend_schema(parameters=[OpenApiParameter("tool_name", str, OpenApiParameter.PATH)],
                   responses={200: ToolSchemaSerializer})
    def get(self, request, tool_name):
        tool = Tool.objects.for_org(self.organization).filter(name=tool_name).first()
        if tool is None:
            raise exceptions.NotFound(f"No tool named {tool_name!r}.")
        return Response({"name": tool.name, "tool_type": tool.tool_type, "config_schema": tool.config_schema,
                         "parameters_schema": tool.parameters_schema, "configuration": tool.configuration})


# --- templates ---------------------------------------------------------------------------------

class _TemplateViewSet(TenantScopedViewSet):
    lookup_value_regex = UUID_LOOKUP
    action_roles = {a: HUMAN_ROLES for a in WRITE_ACTIONS}

    def perform_create(self, serializer):
        serializer.instance = services.template_create(self.model, organization=self.organization,
                                                       actor=self.request.user, data=serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = services.template_update(instance=serializer.instance, actor=self.request.user,
                                                       data=serializer.validated_data)

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
        return Response({"template_id": template.pk, "rendered": rendered,
                         "variables": services.template_variables(template.template)})


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
        agent = services.agent_template_use(template=template, actor=request.user, name=data.get("name"),
                                            description=data.get("description"))
        return Response(AgentSerializer(agent).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["templates"])
class OrchestrationTemplateViewSet(_TemplateViewSet):
    """Seed 003 orchestration templates. ``{id}/use`` creates the orchestration once the run
    engine exists; until then it answers with the configuration to create it from."""

    model = OrchestrationTemplate
    serializer_class = OrchestrationTemplateSerializer
    filterset_fields = ["category", "is_official", "pattern"]

    @extend_schema(request=UseTemplateSerializer, responses={200: OrchestrationUseResponseSerializer,
                                                             201: OrchestrationUseResponseSerializer})
    @action(detail=True, methods=["post"])
    def use(self, request, pk=None):
        template = self.get_object()
        data = validated(UseTemplateSerializer, request)
        body = services.orchestration_template_use(template=template, actor=request.user, name=data.get("name"))
        return Response(body, status=status.HTTP_201_CREATED if body["created"] else status.HTTP_200_OK)


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
        serializer.instance = services.service_create(organization=self.organization, actor=self.request.user,
                                                      data=serializer.validated_data)

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
        from django.conf import settings

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
            organization=self.organization, actor=request.user, agent=agent, name=data.get("name"),
            channels=data.get("channels") or ["api"], orchestration_id=data.get("orchestration_id"))
        body = DeploymentSerializer(deployment).data
        body.update({"deployment_id": deployment.pk, "key": raw,
                     "cli_command": f"curl -X POST {body['api_url']} -H 'Authorization: Bearer {raw}' "
                                    "-H 'Content-Type: application/json' -d '{\"prompt\": \"…\"}'",
                     "mcp_command": (f"claude mcp add --transport http {slugify(deployment.name) or 'kai'} "
                                     f"{body['mcp_url']} --header 'Authorization: Bearer {raw}'")
                     if body["mcp_url"] else None})
        return Response(body, status=status.HTTP_201_CREATED)


@extend_schema(tags=["deployments"])
class DeploymentInvokeView(PublicAPIView):
    """An agent's invocation URL. Authenticated by its deployment key only
    (``Authorization: Bearer kdep_…`` or ``X-Deployment-Key``); a stopped deployment answers 401."""

    @extend_schema(request=InvokeRequestSerializer, responses={200: AgentTestResponseSerializer},
                   parameters=[OpenApiParameter("X-Deployment-Key", str, OpenApiParameter.HEADER, required=False)],
                   auth=[])
    def post(self, request, pk):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        raw = header[7:].strip() if header.lower().startswith("bearer ") else request.META.get("HTTP_X_DEPLOYMENT_KEY", "")
        deployment = services.deployment_authenticate(deployment_id=pk, raw_key=raw)
        if deployment is None:
            raise exceptions.AuthenticationFailed("Deployment key is invalid, or the deployment is stopped.",
                                                  code=codes.UNAUTHORIZED)
        data = validated(InvokeRequestSerializer, request)
        status_code, body = services.deployment_invoke(deployment=deployment, prompt=data["prompt"],
                                                       params=data.get("parameters"), channel="api")
        return Response(body, status=status_code)
