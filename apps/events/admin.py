from django.contrib import admin

from apps.events.models import Event
from kai_platform.admin import ReadOnlyAdmin


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ("id", "type", "severity", "organization", "agent_id", "execution_id", "actor", "created_at")
    list_filter = ("organization", "severity", "component", ("created_at", admin.DateFieldListFilter))
    search_fields = ("type", "=agent_id", "=execution_id")
    list_select_related = ("organization", "actor")
    date_hierarchy = "created_at"
