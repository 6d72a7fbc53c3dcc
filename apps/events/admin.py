"""The event log, read-only: filter by organization, type, severity, component and date."""

from django.contrib import admin

from apps.events.models import Event
from kai_platform.admin import ReadOnlyAdmin, id_link


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ("id", "type", "severity", "component", "organization", "agent", "execution", "actor", "created_at")
    list_filter = ("organization", "severity", "component", ("created_at", admin.DateFieldListFilter))
    search_fields = ("type", "=agent_id", "=execution_id", "actor__email")
    list_select_related = ("organization", "actor")
    readonly_fields = (
        "id",
        "organization",
        "type",
        "severity",
        "component",
        "agent_id",
        "execution_id",
        "actor",
        "owner",
        "data",
        "created_at",
    )
    date_hierarchy = "created_at"
    show_full_result_count = False  # a COUNT(*) over the whole log on every page is the slow part

    @admin.display(description="agent")
    def agent(self, obj):
        return id_link("agents.Agent", obj.agent_id)

    @admin.display(description="execution")
    def execution(self, obj):
        return id_link("runs.Execution", obj.execution_id)
