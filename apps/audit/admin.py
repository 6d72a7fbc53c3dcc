"""The audit trail, read-only: who changed what, filterable by organization, actor, model and date."""

from django.contrib import admin

from apps.audit.models import AuditEvent
from kai_platform.admin import ReadOnlyAdmin


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("id", "action", "model", "object_id", "organization", "actor", "actor_type", "ip", "created_at")
    list_filter = ("organization", "actor_type", "model", ("created_at", admin.DateFieldListFilter))
    search_fields = ("action", "model", "=object_id", "=request_id", "actor__email")
    list_select_related = ("organization", "actor")
    readonly_fields = (
        "id",
        "organization",
        "actor",
        "actor_type",
        "action",
        "model",
        "object_id",
        "before",
        "after",
        "request_id",
        "ip",
        "user_agent",
        "created_at",
    )
    date_hierarchy = "created_at"
    show_full_result_count = False
