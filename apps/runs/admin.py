"""Operator console for runs: browse, filter by organization/status/date, cancel or retry
executions (``apps.runs.services``), status history and trace spans inline."""

from django.contrib import admin, messages

from apps.runs import services
from apps.runs.models import (
    TERMINAL_STATUSES,
    Execution,
    ExecutionEvent,
    ExecutionKind,
    ExecutionLog,
    TraceSpan,
    UsageRollup,
)
from kai_platform.admin import CREATED, ReadOnlyAdmin, changelist_link, id_link
from kai_platform.api.errors import Conflict


class ExecutionEventInline(admin.TabularInline):
    model = ExecutionEvent
    extra = 0
    can_delete = False
    fields = ("at", "from_status", "to_status", "reason")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


class TraceSpanInline(admin.TabularInline):
    model = TraceSpan
    extra = 0
    can_delete = False
    fields = ("started_at", "kind", "name", "status", "model", "duration_ms", "tokens_in", "tokens_out", "cost")
    readonly_fields = fields
    ordering = ("started_at", "id")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Execution)
class ExecutionAdmin(admin.ModelAdmin):
    list_display = (
        "short_id",
        "run_name",
        "kind",
        "status",
        "organization",
        "agent",
        "worker",
        "attempts",
        "started_at",
        "duration",
        "total_tokens",
        "cost",
        "created_at",
    )
    list_filter = (
        "status",
        "kind",
        "organization",
        "cancel_requested",
        CREATED,
        ("completed_at", admin.DateFieldListFilter),
    )
    search_fields = ("=id", "run_name", "=trace_id", "worker", "=dedupe_key", "organization__slug")
    list_select_related = ("organization", "agent")
    readonly_fields = [f.name for f in Execution._meta.concrete_fields] + ["logs", "spans"]
    inlines = [ExecutionEventInline, TraceSpanInline]
    actions = ["cancel", "retry"]

    def has_add_permission(self, request):
        return False

    @admin.display(description="run", ordering="id")
    def short_id(self, obj):
        return str(obj.pk)[:8]

    @admin.display(description="duration")
    def duration(self, obj):
        ms = obj.duration_ms
        return "-" if ms is None else f"{ms / 1000:.2f} s"

    @admin.display(description="tokens")
    def total_tokens(self, obj):
        return obj.total_tokens

    @admin.display(description="logs")
    def logs(self, obj):
        return changelist_link(ExecutionLog, "all log lines", execution__id__exact=obj.pk)

    @admin.display(description="spans")
    def spans(self, obj):
        return changelist_link(TraceSpan, "all trace spans", execution__id__exact=obj.pk)

    @admin.action(description="Cancel the selected runs")
    def cancel(self, request, queryset):
        done = 0
        for execution in queryset.exclude(status__in=TERMINAL_STATUSES).select_related("organization"):
            try:
                services.execution_cancel(execution=execution, actor=request.user, reason="cancelled by an operator")
                done += 1
            except Conflict:
                pass  # it ended meanwhile
        self.message_user(request, f"Cancel requested for {done} run(s).", messages.SUCCESS)

    @admin.action(description="Retry the selected runs (a new run with the same definition)")
    def retry(self, request, queryset):
        done = 0
        for execution in (
            queryset.filter(status__in=TERMINAL_STATUSES)
            .exclude(kind=ExecutionKind.WORKFLOW_STEP)
            .select_related("organization", "crew", "orchestration", "agent")
        ):
            services.execution_retry(execution=execution, actor=request.user)
            done += 1
        self.message_user(request, f"Queued {done} retry run(s).", messages.SUCCESS)


@admin.register(ExecutionEvent)
class ExecutionEventAdmin(ReadOnlyAdmin):
    list_display = ("execution_link", "organization", "from_status", "to_status", "reason", "at")
    list_filter = ("to_status", "organization", ("at", admin.DateFieldListFilter))
    search_fields = ("=execution__id", "reason")
    list_select_related = ("organization",)

    @admin.display(description="execution")
    def execution_link(self, obj):
        return id_link(Execution, obj.execution_id)


@admin.register(ExecutionLog)
class ExecutionLogAdmin(ReadOnlyAdmin):
    list_display = ("execution_link", "seq", "level", "message", "organization", "created_at")
    list_filter = ("level", "organization", CREATED)
    search_fields = ("=execution__id", "message")
    list_select_related = ("organization",)

    @admin.display(description="execution")
    def execution_link(self, obj):
        return id_link(Execution, obj.execution_id)


@admin.register(TraceSpan)
class TraceSpanAdmin(ReadOnlyAdmin):
    list_display = (
        "execution_link",
        "trace_id",
        "kind",
        "name",
        "status",
        "model",
        "duration_ms",
        "tokens_in",
        "tokens_out",
        "cost",
        "organization",
        "started_at",
    )
    list_filter = ("kind", "status", "organization", ("started_at", admin.DateFieldListFilter))
    search_fields = ("=trace_id", "name", "=execution__id", "model")
    list_select_related = ("organization",)

    @admin.display(description="execution")
    def execution_link(self, obj):
        return id_link(Execution, obj.execution_id)


@admin.register(UsageRollup)
class UsageRollupAdmin(ReadOnlyAdmin):
    list_display = (
        "organization",
        "day",
        "agent_name",
        "model",
        "executions",
        "llm_calls",
        "tokens_in",
        "tokens_out",
        "cost",
    )
    list_filter = (("day", admin.DateFieldListFilter), "organization", "model")
    search_fields = ("agent_name", "model", "organization__slug")
    list_select_related = ("organization",)
    date_hierarchy = "day"
