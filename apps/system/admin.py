from django.contrib import admin

from apps.system.models import MetricRollup, SystemModification
from kai_platform.admin import ReadOnlyAdmin


@admin.register(SystemModification)
class SystemModificationAdmin(ReadOnlyAdmin):
    """History is read-only here: changes and rollbacks go through ``system/modify`` and
    ``system/rollback`` so they are validated and audited."""

    list_display = ("applied_at", "type", "description", "target_model", "target_id", "organization", "applied_by",
                    "rollback_available")
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
