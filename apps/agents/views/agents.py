"""Agent endpoints: CRUD, status, test runs, versions, memory, events."""

from __future__ import annotations

from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, status
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.agents import calls, selectors, services
from apps.agents.models import Agent, AgentStatus, AgentVersion
from apps.agents.serializers import (
    AgentSerializer,
    AgentStatusSerializer,
    AgentTestRequestSerializer,
    AgentTestResponseSerializer,
    AgentVersionSerializer,
    MemorySerializer,
)
from apps.agents.views.common import UUID_LOOKUP
from apps.events.models import Event
from apps.events.selectors import visible_events
from apps.events.serializers import EventSerializer
from apps.stepup.permissions import RequiresStepUp
from kai_platform.api.serializers import validated
from kai_platform.tenancy.permissions import IsOrganizationMember
from kai_platform.tenancy.roles import HUMAN_ROLES
from kai_platform.tenancy.viewsets import TenantScopedViewSet

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
        serializer.instance = services.agent_create(
            organization=self.organization, actor=self.request.user, data=serializer.validated_data
        )

    def perform_update(self, serializer):
        serializer.instance = services.agent_update(
            agent=serializer.instance, actor=self.request.user, data=serializer.validated_data
        )

    def perform_destroy(self, instance):
        services.agent_delete(agent=instance, actor=self.request.user)

    def _status_body(self, agent):
        beats = selectors.heartbeats(kind="agent", ids=[agent.pk])
        online = str(agent.pk) in beats
        state = {AgentStatus.EXECUTING: "executing", AgentStatus.ERROR: "error", AgentStatus.DISABLED: "disabled"}.get(
            agent.status, "idle"
        )
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
            "agent_id": agent.pk,
            "agent_number": agent.agent_number,
            "status": agent.status,
            "is_active": agent.is_active,
            "timestamp": timezone.now(),
            "last_heartbeat": beats.get(str(agent.pk)) or agent.last_heartbeat,
            "online": online,
            "detail": {
                "state": state,
                "last_error": agent.last_error or None,
                "health_score": health,
                "resource_usage": {
                    "api_calls_per_minute": selectors.agent_api_calls_last_minute(agent=agent),
                    "cpu_usage": None,
                    "memory_usage": None,
                    "network_usage": None,
                },
            },
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

    @extend_schema(
        parameters=[OpenApiParameter("after", int, description="Only events after this seq.")],
        responses={200: EventSerializer(many=True)},
    )
    @action(detail=True, methods=["get"])
    def logs(self, request, pk=None):
        agent = self.get_object()
        queryset = visible_events(
            queryset=Event.objects.for_org(self.organization).filter(agent_id=agent.pk),
            user=request.user,
            role=self.role,
        )
        after = request.query_params.get("after")
        if after:
            try:
                queryset = queryset.filter(id__gt=int(after))
            except ValueError:
                raise exceptions.ValidationError({"after": ["Must be an integer seq."]})
        page = self.paginate_queryset(queryset.order_by("id"))
        return self.get_paginated_response(EventSerializer(page, many=True).data)

    @extend_schema(
        methods=["GET"],
        parameters=[
            OpenApiParameter("type", str, description="memory_type"),
            OpenApiParameter("memory_type", str),
            OpenApiParameter("tags", str, description="Comma-separated; entries carrying all of them."),
            OpenApiParameter("since", OpenApiTypes.DATETIME),
        ],
        responses={200: MemorySerializer(many=True)},
    )
    @extend_schema(methods=["POST"], request=MemorySerializer, responses={201: MemorySerializer})
    @action(detail=True, methods=["get", "post"])
    def memory(self, request, pk=None):
        agent = self.get_object()
        if request.method == "POST":
            data = validated(MemorySerializer, request)
            memory = services.memory_store(
                agent=agent,
                actor=request.user,
                memory_type=data.get("memory_type") or "general",
                content=data["content"],
                tags=data.get("tags") or [],
                ttl=data.get("ttl"),
            )
            return Response(MemorySerializer(memory).data, status=status.HTTP_201_CREATED)
        params = request.query_params
        since = None
        if "since" in params:
            since = parse_datetime(params["since"])
            if since is None:
                raise exceptions.ValidationError({"since": ["Must be an ISO 8601 date-time."]})
        tags = [t.strip() for t in params.get("tags", "").split(",") if t.strip()]
        queryset = selectors.memory_query(
            agent=agent, memory_type=params.get("type") or params.get("memory_type"), tags=tags, since=since
        )
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
        status_code, body = calls.agent_call(
            agent=agent, actor=request.user, prompt=data["prompt"], params=data.get("parameters"), source="test"
        )
        return Response(body, status=status_code)
