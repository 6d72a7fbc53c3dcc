"""Operator console for crews, orchestrations and task definitions (their runs: ``apps.runs.admin``)."""

from django.contrib import admin

from apps.crews.models import Crew, Orchestration, TaskDefinition
from apps.runs.models import Execution
from kai_platform.admin import CREATED, changelist_link


@admin.register(Crew)
class CrewAdmin(admin.ModelAdmin):
    list_display = ("name", "organization", "process", "model", "created_by", "created_at", "runs")
    list_filter = ("process", "organization", CREATED)
    search_fields = ("name", "description", "=id", "organization__slug")
    list_select_related = ("organization", "created_by")
    readonly_fields = ("id", "organization", "created_by", "created_at", "updated_at")

    @admin.display(description="runs")
    def runs(self, obj):
        return changelist_link(Execution, "runs", crew__id__exact=obj.pk)


@admin.register(Orchestration)
class OrchestrationAdmin(admin.ModelAdmin):
    list_display = ("name", "organization", "pattern", "status", "created_at", "runs")
    list_filter = ("pattern", "status", "organization", CREATED)
    search_fields = ("name", "=id", "organization__slug")
    list_select_related = ("organization",)
    readonly_fields = ("id", "organization", "created_by", "created_at", "updated_at")

    @admin.display(description="runs")
    def runs(self, obj):
        return changelist_link(Execution, "runs", orchestration__id__exact=obj.pk)


@admin.register(TaskDefinition)
class TaskDefinitionAdmin(admin.ModelAdmin):
    list_display = ("name", "organization", "agent", "async_execution", "created_at")
    list_filter = ("organization", "async_execution", CREATED)
    search_fields = ("name", "description", "=id")
    list_select_related = ("organization",)
    readonly_fields = ("id", "organization", "created_by", "created_at", "updated_at")
