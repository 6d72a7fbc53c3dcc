from django.contrib import admin

from apps.system import services
from apps.system.models import AlertStatus, Maintenance, MetricRollup, SystemAlert, SystemModification
from kai_platform.admin import ReadOnlyAdmin


@admin.register(SystemModification)
class SystemModificationAdmin(ReadOnlyAdmin):
    """History is read-only here: changes and rollbacks go through ``system/modify`` and
    ``system/rollback`` so they are validated and audited."""

    list_display = (
        "applied_at",
        "type",
        "description",
        "target_model",
        "target_id",
        "organization",
        "applied_by",
        "rollback_available",
    )
    list_filter = ("organization", "type", "rollback_available")
    search_fields = ("description", "=target_id", "applied_by__email")
    list_select_related = ("organization", "applied_by")
    date_hierarchy = "applied_at"


@admin.register(MetricRollup)
class MetricRollupAdmin(ReadOnlyAdmin):
    list_display = ("bucket", "name", "label_key", "value", "organization")
    list_filter = ("name", "organization")
    search_fields = ("name", "label_key")
    list_select_related = ("organization",)
    date_hierarchy = "bucket"


@admin.register(SystemAlert)
class SystemAlertAdmin(admin.ModelAdmin):
    """Adding an alert broadcasts it to every organization (``system_alert`` on their sockets);
    the actions announce a new status."""

    list_display = ("created_at", "severity", "type", "message", "status", "organizations_reached", "created_by")
    list_filter = ("severity", "status")
    search_fields = ("message", "type")
    list_select_related = ("created_by",)
    fields = ("severity", "type", "message", "affected_components", "status", "estimated_resolution")
    actions = ("announce_resolved", "announce_monitoring")

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request, obj)

    def save_model(self, request, obj, form, change):
        alert = services.system_alert_broadcast(
            actor=request.user,
            severity=obj.severity,
            message=obj.message,
            type=obj.type,
            affected_components=obj.affected_components,
            status=obj.status,
            estimated_resolution=obj.estimated_resolution,
        )
        obj.pk = alert.pk

    def _announce(self, request, queryset, status):
        for alert in queryset:
            services.system_alert_update(actor=request.user, alert=alert, status=status)
        self.message_user(request, f"{queryset.count()} alert(s) announced as {status}.")

    @admin.action(description="Announce resolved")
    def announce_resolved(self, request, queryset):
        self._announce(request, queryset, AlertStatus.RESOLVED)

    @admin.action(description="Announce monitoring")
    def announce_monitoring(self, request, queryset):
        self._announce(request, queryset, AlertStatus.MONITORING)


@admin.register(Maintenance)
class MaintenanceAdmin(admin.ModelAdmin):
    """Saving turns maintenance on or off through ``services.maintenance_set`` (audited, announced)."""

    list_display = ("__str__", "message", "until", "started_at", "updated_by", "updated_at")
    list_select_related = ("updated_by",)
    fields = ("enabled", "message", "until")

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        services.maintenance_set(actor=request.user, enabled=obj.enabled, message=obj.message, until=obj.until)
