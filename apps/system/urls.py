"""API routes of apps.system (registered on the shared router)."""

from django.urls import path

from apps.system import operator_views, views
from kai_platform.api.routers import router

router.register("system/modifications", views.ModificationViewSet, basename="system-modification")

urlpatterns = [
    path("system/health", views.SystemHealthView.as_view(), name="system-health"),
    path("system/architecture", views.ArchitectureView.as_view(), name="system-architecture"),
    path("system/config", views.SystemConfigView.as_view(), name="system-config"),
    path("system/modify", views.ModifyView.as_view(), name="system-modify"),
    path("system/alerts", operator_views.SystemAlertsView.as_view(), name="system-alerts"),
    path("system/maintenance", operator_views.MaintenanceView.as_view(), name="system-maintenance"),
    path("system/rollback", views.RollbackView.as_view(), name="system-rollback"),
    path("system/performance", views.PerformanceView.as_view(), name="system-performance"),
    path("system/logs", views.LogsView.as_view(), name="system-logs"),
    path("metrics", views.MetricsSeriesView.as_view(), name="metrics-series"),
    path("runtime/metrics", views.RuntimeMetricsView.as_view(), name="runtime-metrics"),
]
