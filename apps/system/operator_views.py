"""Operator broadcasts of the platform (docs/realtime.md): ``system/alerts`` and ``system/maintenance``.
Writing them takes a staff user (the platform's operators); reading maintenance takes any credential."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status
from rest_framework.response import Response

from apps.system import selectors, services
from apps.system.serializers import (
    MaintenanceBodySerializer,
    MaintenanceSerializer,
    SystemAlertBodySerializer,
    SystemAlertSerializer,
)
from kai_platform.api.serializers import validated
from kai_platform.api.views import KaiAPIView
from kai_platform.tenancy.permissions import IsAuthenticated


class IsPlatformOperator(IsAuthenticated):
    """Staff (or superusers) of the platform, whatever organization their credential names."""

    def has_permission(self, request, view):
        if not super().has_permission(request, view):
            return False
        if not (request.user.is_staff or request.user.is_superuser):
            raise exceptions.PermissionDenied("Only the platform's operators (staff) may do this.")
        return True


def _alert_row(alert) -> dict:
    return {
        **services.alert_payload(alert),
        "organizations_reached": alert.organizations_reached,
        "created_at": alert.created_at,
    }


@extend_schema(tags=["system"])
class SystemAlertsView(KaiAPIView):
    """``GET``: the latest operator alerts; ``POST``: broadcast one to every organization
    (``system_alert`` on the hub socket)."""

    permission_classes = [IsPlatformOperator]

    @extend_schema(responses={200: SystemAlertSerializer(many=True)})
    def get(self, request):
        return Response({"items": [_alert_row(a) for a in selectors.recent_alerts()]})

    @extend_schema(request=SystemAlertBodySerializer, responses={201: SystemAlertSerializer})
    def post(self, request):
        data = validated(SystemAlertBodySerializer, request)
        alert = services.system_alert_broadcast(actor=request.user, **data)
        return Response(_alert_row(alert), status=status.HTTP_201_CREATED)


@extend_schema(tags=["system"])
class MaintenanceView(KaiAPIView):
    """``GET``: whether maintenance is on; ``POST {enabled, message, until, disconnect_seconds}``
    (staff): while on, new runs answer 503 ``GENERAL_004`` with ``Retry-After``."""

    def get_permissions(self):
        return [IsPlatformOperator() if self.request.method == "POST" else IsAuthenticated()]

    @extend_schema(responses={200: MaintenanceSerializer})
    def get(self, request):
        return Response(services.maintenance_payload(selectors.maintenance_state()))

    @extend_schema(request=MaintenanceBodySerializer, responses={200: MaintenanceSerializer})
    def post(self, request):
        data = validated(MaintenanceBodySerializer, request)
        state = services.maintenance_set(actor=request.user, **data)
        return Response(services.maintenance_payload(state))
