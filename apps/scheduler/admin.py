"""Operator console for schedules: browse, filter by organization, toggle or run now."""
from django.contrib import admin, messages

from apps.scheduler import services
from apps.scheduler.models import Schedule


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    list_display = ("name", "organization", "cron_expression", "timezone", "target_type", "enabled",
                    "misfire_policy", "last_run_at")
    list_filter = ("enabled", "target_type", "misfire_policy", "organization")
    search_fields = ("name", "=id", "cron_expression")
    list_select_related = ("organization",)
    readonly_fields = ("organization", "created_by", "created_at", "updated_at", "last_run_at", "last_tick_at",
                       "last_execution", "periodic_task")
    raw_id_fields = ("crew", "agent")
    actions = ["toggle", "run_now"]

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

    @admin.action(description="Toggle the selected schedules (enable ↔ disable)")
    def toggle(self, request, queryset):
        done = 0
        for schedule in queryset:
            services.schedule_toggle(schedule=schedule, actor=request.user)
            done += 1
        self.message_user(request, f"Toggled {done} schedule(s).", messages.SUCCESS)

    @admin.action(description="Run the selected schedules now")
    def run_now(self, request, queryset):
        done = 0
        for schedule in queryset:
            services.schedule_run_now(schedule=schedule, actor=request.user)
            done += 1
        self.message_user(request, f"Started {done} run(s).", messages.SUCCESS)
