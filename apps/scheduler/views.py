"""Thin views over apps.scheduler.services / selectors."""

from __future__ import annotations

from datetime import UTC

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.scheduler import selectors, services
from apps.scheduler.models import Schedule
from apps.scheduler.serializers import NextRunsSerializer, RunNowSerializer, ScheduleSerializer, ToggleSerializer
from kai_platform.api.serializers import validated
from kai_platform.tenancy.roles import HUMAN_ROLES
from kai_platform.tenancy.viewsets import TenantScopedViewSet

MAX_NEXT_RUNS = 50


@extend_schema(tags=["scheduler"])
class ScheduleViewSet(TenantScopedViewSet):
    """Schedules (``scheduler/schedules``, docs/scheduler.md): a cron expression in a time zone that starts a
    crew or an agent task. PUT takes partial bodies."""

    model = Schedule
    serializer_class = ScheduleSerializer
    filterset_fields = ["enabled", "target_type"]
    action_roles = {
        name: HUMAN_ROLES for name in ("create", "update", "partial_update", "destroy", "toggle", "run_now")
    }

    def scope_queryset(self, queryset):
        return selectors.schedules_for_list(queryset=queryset)

    def perform_create(self, serializer):
        serializer.instance = services.schedule_create(
            organization=self.organization, actor=self.request.user, data=serializer.service_data()
        )

    def perform_update(self, serializer):
        serializer.instance = services.schedule_update(
            schedule=serializer.instance, actor=self.request.user, data=serializer.service_data()
        )

    def perform_destroy(self, instance):
        services.schedule_delete(schedule=instance, actor=self.request.user)

    @extend_schema(request=ToggleSerializer, responses={200: ScheduleSerializer})
    @action(detail=True, methods=["patch", "post"])
    def toggle(self, request, pk=None):
        """Enable or disable the schedule (``{"enabled": bool}``, or no body to flip it)."""
        schedule = self.get_object()
        data = validated(ToggleSerializer, request, data=request.data or {})
        schedule = services.schedule_toggle(schedule=schedule, actor=request.user, enabled=data.get("enabled"))
        return Response(ScheduleSerializer(self.get_queryset().get(pk=schedule.pk)).data)

    @extend_schema(request=None, responses={202: RunNowSerializer})
    @action(detail=True, methods=["post"], url_path="run-now")
    def run_now(self, request, pk=None):
        """Start a run of the schedule's target now (not keyed to a tick)."""
        execution = services.schedule_run_now(schedule=self.get_object(), actor=request.user)
        return Response(
            {"execution_id": execution.pk, "status": execution.status, "schedule_id": pk},
            status=status.HTTP_202_ACCEPTED,
        )

    @extend_schema(
        responses={
            200: inline_serializer(
                "ScheduleHistory",
                {
                    "schedule_id": serializers.UUIDField(),
                    "items": serializers.ListField(
                        child=inline_serializer(
                            "ScheduleHistoryItem",
                            {
                                "tick": serializers.CharField(allow_null=True),
                                "outcome": serializers.ChoiceField(choices=["fired", "quota_refused"]),
                                "at": serializers.DateTimeField(),
                                "execution_id": serializers.UUIDField(allow_null=True),
                                "status": serializers.CharField(allow_null=True),
                                "quota": serializers.DictField(allow_null=True),
                                "message": serializers.CharField(allow_blank=True),
                            },
                        )
                    ),
                },
            )
        }
    )
    @action(detail=True, methods=["get"])
    def history(self, request, pk=None):
        """The schedule's ticks, newest first: runs it fired and ticks refused by a plan quota."""
        schedule = self.get_object()
        return Response({"schedule_id": schedule.pk, "items": selectors.schedule_history(schedule=schedule)})

    @extend_schema(
        parameters=[OpenApiParameter("count", OpenApiTypes.INT, description=f"1…{MAX_NEXT_RUNS} (default 5)")],
        responses={200: NextRunsSerializer},
    )
    @action(detail=True, methods=["get"], url_path="next-runs")
    def next_runs(self, request, pk=None):
        """The next run times, in the schedule's time zone and in UTC (DST-correct)."""
        schedule = self.get_object()
        raw = request.query_params.get("count", "5")
        try:
            count = int(raw)
        except ValueError:
            count = 0
        if not 1 <= count <= MAX_NEXT_RUNS:
            raise exceptions.ValidationError({"count": [f"Must be an integer 1…{MAX_NEXT_RUNS}."]})
        ticks = selectors.schedule_next_runs(schedule=schedule, now=timezone.now(), count=count)
        return Response(
            {
                "schedule_id": schedule.pk,
                "cron_expression": schedule.cron_expression,
                "timezone": schedule.timezone,
                "enabled": schedule.enabled,
                "next_runs": [
                    {"at": t.isoformat(), "at_utc": t.astimezone(UTC).isoformat().replace("+00:00", "Z")} for t in ticks
                ],
            }
        )
