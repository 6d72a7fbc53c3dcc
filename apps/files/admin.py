"""Uploaded files: metadata only (bytes stay in storage); uploads go through the API."""

from django.contrib import admin
from django.template.defaultfilters import filesizeformat

from apps.files.models import StoredFile
from kai_platform.admin import CREATED, id_link


@admin.register(StoredFile)
class StoredFileAdmin(admin.ModelAdmin):
    list_display = ("name", "organization", "human_size", "content_type", "execution", "created_by", "created_at")
    list_filter = ("organization", "content_type", CREATED)
    search_fields = ("name", "=sha256", "=id", "organization__slug")
    list_select_related = ("organization", "created_by")
    readonly_fields = (
        "organization",
        "name",
        "storage_key",
        "size",
        "content_type",
        "declared_content_type",
        "sha256",
        "agent_id",
        "execution_id",
        "metadata",
        "created_by",
        "created_at",
        "updated_at",
    )

    def has_add_permission(self, request):
        return False

    @admin.display(description="size", ordering="size")
    def human_size(self, obj):
        return filesizeformat(obj.size)

    @admin.display(description="execution")
    def execution(self, obj):
        return id_link("runs.Execution", obj.execution_id)
