from django.contrib import admin

from apps.retention.models import RetentionPolicy, RetentionRun


@admin.register(RetentionPolicy)
class RetentionPolicyAdmin(admin.ModelAdmin):
    list_display = ("organization", "executions_days", "events_days", "audit_days", "keep", "updated_at")
    list_select_related = ("organization",)


@admin.register(RetentionRun)
class RetentionRunAdmin(admin.ModelAdmin):
    list_display = ("organization", "created_at", "seconds", "counts")
    list_select_related = ("organization",)
    readonly_fields = ("organization", "counts", "cutoffs", "seconds", "finished_at")
