"""Operator console for runs: browse, filter by organization, cancel or retry executions."""
from django.contrib import admin, messages

from apps.crews import services
from apps.crews.models import (
    TERMINAL_STATUSES,
    Crew,
    Execution,
    ExecutionEvent,
    ExecutionKind,
    ExecutionLog,
    Orchestration,
    TaskDefinition,
    TraceSpan,
    UsageRollup,
)
from kai_platform.admin import ReadOnlyAdmin


@admin.register(Crew)
class CrewAdmin(admin.ModelAdmin):
    list_display = ("name", "organization", "process", "model", "created_at")
    list_filter = ("process", "organization")
    search_fields = ("name", "description", "=id")
    list_select_related = ("organization",)
    readonly_fields = ("created_at", "updated_at")


@admin.register(Orchestration)
class OrchestrationAdmin(admin.ModelAdmin):
    list_display = ("name", "organization", "pattern", "status", "created_at")
    list_filter = ("pattern", "status", "organization")
    search_fields = ("name", "=id")
    list_select_related = ("organization",)


@admin.register(TaskDefinition)
class TaskDefinitionAdmin(admin.ModelAdmin):
    list_display = ("name", "organization", "agent", "created_at")
    list_filter = ("organization",)
    search_fields = ("name", "description", "=id")
    list_select_related = ("organization",)


class ExecutionEventInline(admin.TabularInline):
    model = ExecutionEvent
    extra = 0
    can_delete = False
    fields = ("at", "from_status", "to_status", "reason")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Execution)
class ExecutionAdmin(admin.ModelAdmin):
    list_display = ("id", "run_name", "kind", "status", "organization", "worker", "tokens_out", "cost", "created_at")
    list_filter = ("status", "kind", "organization")
    search_fields = ("=id", "run_name", "trace_id", "worker")
    list_select_related = ("organization",)
    readonly_fields = [f.name for f in Execution._meta.concrete_fields]
    inlines = [ExecutionEventInline]
    actions = ["cancel", "retry"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Cancel the selected runs")
    def cancel(self, request, queryset):
        done = 0
        for execution in queryset.exclude(status__in=TERMINAL_STATUSES):
            services.execution_cancel(execution=execution, actor=request.user, reason="cancelled by an operator")
            done += 1
        self.message_user(request, f"Cancel requested for {done} run(s).", messages.SUCCESS)

    @admin.action(description="Retry the selected runs (a new run with the same definition)")
    def retry(self, request, queryset):
        done = 0
        for execution in queryset.filter(status__in=TERMINAL_STATUSES).select_related("organization"):
            if execution.kind == ExecutionKind.WORKFLOW_STEP:
                continue
            services.execution_create(
                organization=execution.organization, actor=request.user, kind=execution.kind,
                run_name=f"{execution.run_name} (retry)", crew=execution.crew, orchestration=execution.orchestration,
                agent=execution.agent, inputs=execution.inputs, definition=execution.definition,
                params=execution.params, model=execution.model, priority=execution.priority,
                max_attempts=execution.max_attempts)
            done += 1
        self.message_user(request, f"Queued {done} retry run(s).", messages.SUCCESS)


@admin.register(ExecutionEvent)
class ExecutionEventAdmin(ReadOnlyAdmin):
    list_display = ("execution", "from_status", "to_status", "reason", "at")
    list_filter = ("to_status", "organization")
    search_fields = ("=execution__id", "reason")
    list_select_related = ("execution",)


@admin.register(ExecutionLog)
class ExecutionLogAdmin(ReadOnlyAdmin):
    list_display = ("execution", "seq", "level", "message", "created_at")
    list_filter = ("level", "organization")
    search_fields = ("=execution__id", "message")
    list_select_related = ("execution",)


@admin.register(TraceSpan)
class TraceSpanAdmin(ReadOnlyAdmin):
    list_display = ("trace_id", "kind", "name", "status", "duration_ms", "tokens_in", "tokens_out", "cost")
    list_filter = ("kind", "status", "organization")
    search_fields = ("trace_id", "name", "=execution__id")


@admin.register(UsageRollup)
class UsageRollupAdmin(ReadOnlyAdmin):
    list_display = ("organization", "day", "agent_name", "model", "executions", "llm_calls", "tokens_in",
                    "tokens_out", "cost")
    list_filter = ("day", "organization")
    search_fields = ("agent_name", "model")
    list_select_related = ("organization",)
