"""Operator console for schedules: browse, filter by organization, toggle or run now."""

from django.contrib import admin, messages
from rest_framework.exceptions import APIException

from apps.runs.models import Execution
from apps.scheduler import services
from apps.scheduler.models import Schedule
from kai_platform.admin import CREATED, id_link


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "organization",
        "cron_expression",
        "timezone",
        "target",
        "enabled",
        "misfire_policy",
        "last_run_at",
        "last_run",
    )
    list_filter = (
        "enabled",
        "target_type",
        "misfire_policy",
        "organization",
        ("last_run_at", admin.DateFieldListFilter),
        CREATED,
    )
    search_fields = ("name", "=id", "cron_expression", "organization__slug")
    list_select_related = ("organization", "crew", "agent")
    readonly_fields = (
        "organization",
        "created_by",
        "created_at",
        "updated_at",
        "last_run_at",
        "last_tick_at",
        "last_execution",
        "periodic_task",
    )
    raw_id_fields = ("crew", "agent")
    actions = ["enable", "disable", "toggle", "run_now"]

    def has_add_permission(self, request):
        return False  # schedules are created through the API (validated, beat entry kept in step)

    def save_model(self, request, obj, form, change):
        data = {name: form.cleaned_data[name] for name in form.changed_data if name in services.SCHEDULE_FIELDS}
        services.schedule_update(schedule=obj, actor=request.user, data=data)

    def delete_model(self, request, obj):
        services.schedule_delete(schedule=obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for schedule in queryset:
            services.schedule_delete(schedule=schedule, actor=request.user)

    @admin.display(description="target")
    def target(self, obj):
        return f"{obj.get_target_type_display()}: {obj.crew or obj.agent or '-'}"

    @admin.display(description="last run")
    def last_run(self, obj):
        return id_link(Execution, obj.last_execution_id)

    def _set_enabled(self, request, queryset, enabled: bool):
        done = 0
        for schedule in queryset.filter(enabled=not enabled):
            services.schedule_toggle(schedule=schedule, actor=request.user, enabled=enabled)
            done += 1
        self.message_user(request, f"{'Enabled' if enabled else 'Disabled'} {done} schedule(s).", messages.SUCCESS)

    @admin.action(description="Enable the selected schedules")
    def enable(self, request, queryset):
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable the selected schedules")
    def disable(self, request, queryset):
        self._set_enabled(request, queryset, False)

    @admin.action(description="Toggle the selected schedules (enable ↔ disable)")
    def toggle(self, request, queryset):
        done = 0
        for schedule in queryset:
            services.schedule_toggle(schedule=schedule, actor=request.user)
            done += 1
        self.message_user(request, f"Toggled {done} schedule(s).", messages.SUCCESS)

    @admin.action(description="Run the selected schedules now")
    def run_now(self, request, queryset):
        done, refused = 0, []
        for schedule in queryset:
            try:
                services.schedule_run_now(schedule=schedule, actor=request.user)
                done += 1
            except APIException as exc:  # e.g. the target no longer exists
                refused.append(f"{schedule.name}: {exc.detail}")
        self.message_user(request, f"Started {done} run(s).", messages.SUCCESS)
        for reason in refused:
            self.message_user(request, f"Not started: {reason}", messages.ERROR)
