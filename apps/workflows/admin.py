"""Operator console for workflows: definitions with their versions, runs with their step runs, cancel."""

from django.contrib import admin, messages

from apps.runs.models import TERMINAL_STATUSES
from apps.workflows import services
from apps.workflows.models import StepRun, Workflow, WorkflowRun, WorkflowVersion
from kai_platform.admin import ReadOnlyAdmin


class WorkflowVersionInline(admin.TabularInline):
    model = WorkflowVersion
    extra = 0
    can_delete = False
    fields = ("version", "created_at", "created_by", "definition")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Workflow)
class WorkflowAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "organization",
        "version",
        "trigger_type",
        "is_active",
        "execution_count",
        "success_rate",
        "last_executed",
    )
    list_filter = ("trigger_type", "is_active", "organization")
    search_fields = ("name", "description", "=id")
    list_select_related = ("organization",)
    readonly_fields = (
        "version",
        "trigger_type",
        "trigger_agent",
        "webhook_token",
        "last_executed",
        "execution_count",
        "success_count",
        "failure_count",
        "created_at",
        "updated_at",
    )
    exclude = ("webhook_secret",)
    inlines = [WorkflowVersionInline]


class StepRunInline(admin.TabularInline):
    model = StepRun
    extra = 0
    can_delete = False
    fields = (
        "step_id",
        "attempt",
        "fallback",
        "state",
        "execution",
        "agent",
        "error",
        "timed_out",
        "scheduled_for",
        "started_at",
        "completed_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(WorkflowRun)
class WorkflowRunAdmin(ReadOnlyAdmin):
    list_display = ("id", "workflow", "version", "status", "phase", "trigger_type", "organization", "created_at")
    list_filter = ("execution__status", "phase", "trigger_type", "organization")
    search_fields = ("=id", "=execution__id", "workflow__name")
    list_select_related = ("organization", "workflow", "execution")
    inlines = [StepRunInline]
    actions = ["cancel"]

    @admin.display(description="status", ordering="execution__status")
    def status(self, obj):
        return obj.execution.status

    @admin.action(description="Cancel the selected runs")
    def cancel(self, request, queryset):
        done = 0
        for run in queryset.select_related("execution", "organization").exclude(
            execution__status__in=TERMINAL_STATUSES
        ):
            services.workflow_run_cancel(run=run, actor=request.user, reason="cancelled by an operator")
            done += 1
        self.message_user(request, f"Cancel requested for {done} run(s).", messages.SUCCESS)


@admin.register(StepRun)
class StepRunAdmin(ReadOnlyAdmin):
    list_display = ("step_id", "attempt", "state", "run", "execution", "organization", "started_at", "completed_at")
    list_filter = ("state", "fallback", "organization")
    search_fields = ("=run__id", "step_id", "=execution__id")
    list_select_related = ("organization", "run", "execution")
