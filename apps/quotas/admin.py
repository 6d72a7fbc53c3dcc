"""Operator console for plan quotas: edit each plan's limits, give an organization custom limits
(an empty field keeps its plan's), browse refusals and the usage ledger."""

from django.contrib import admin
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe

from apps.audit.services import snapshot
from apps.quotas import selectors, services
from apps.quotas.models import QuotaOverride, QuotaPlan, QuotaRefusal, QuotaUsage
from kai_platform.admin import ReadOnlyAdmin


@admin.register(QuotaPlan)
class QuotaPlanAdmin(admin.ModelAdmin):
    list_display = (
        "plan",
        "agent_executions_per_hour",
        "workflow_executions_per_day",
        "voice_commands_per_hour",
        "updated_at",
    )
    readonly_fields = ("updated_at",)

    def save_model(self, request, obj, form, change):
        before = snapshot(QuotaPlan.objects.get(pk=obj.pk)) if change else None
        services.quota_plan_save(plan=obj, actor=request.user, before=before)


@admin.register(QuotaOverride)
class QuotaOverrideAdmin(admin.ModelAdmin):
    list_display = (
        "organization",
        "plan",
        "agent_executions_per_hour",
        "workflow_executions_per_day",
        "voice_commands_per_hour",
        "updated_by",
        "updated_at",
    )
    list_filter = ("organization__plan",)
    search_fields = ("organization__name", "organization__slug", "note")
    list_select_related = ("organization", "updated_by")
    autocomplete_fields = ()
    raw_id_fields = ("organization",)
    readonly_fields = ("usage_now", "updated_by", "created_at", "updated_at")
    fields = (
        "organization",
        "agent_executions_per_hour",
        "workflow_executions_per_day",
        "voice_commands_per_hour",
        "note",
        "usage_now",
        "updated_by",
        "created_at",
        "updated_at",
    )

    @admin.display(description="plan", ordering="organization__plan")
    def plan(self, obj):
        return obj.organization.plan

    @admin.display(description="usage now")
    def usage_now(self, obj):
        """The organization's windows as ``usage.quotas`` shows them (limits in force)."""
        if obj is None or not obj.organization_id:
            return "-"
        rows = [
            (name, q["used"], q["limit"], q["window"], q["reset_at"])
            for name, q in selectors.quota_status(organization=obj.organization_id).items()
        ]
        return format_html_join(
            mark_safe("<br>"),
            "{}: {} of {} per {} (oldest leaves at {})",
            ((name, used, limit, window, reset or "-") for name, used, limit, window, reset in rows),
        )

    def save_model(self, request, obj, form, change):
        before = snapshot(QuotaOverride.objects.get(pk=obj.pk)) if change else None
        services.quota_override_save(override=obj, actor=request.user, before=before)

    def delete_model(self, request, obj):
        services.quota_override_delete(override=obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for override in queryset.select_related("organization"):
            services.quota_override_delete(override=override, actor=request.user)


@admin.register(QuotaRefusal)
class QuotaRefusalAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "organization", "quota", "source", "source_id", "limit", "used", "reset_at")
    list_filter = ("quota", "source", "organization")
    search_fields = ("=source_id", "=id")
    list_select_related = ("organization",)


@admin.register(QuotaUsage)
class QuotaUsageAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "organization", "quota", "amount", "source", "ref")
    list_filter = ("quota", "source", "organization")
    search_fields = ("=ref",)
    list_select_related = ("organization",)
