from django.contrib import admin

from apps.files.models import StoredFile


@admin.register(StoredFile)
class StoredFileAdmin(admin.ModelAdmin):
    list_display = ("name", "organization", "size", "content_type", "created_by", "created_at")
    list_filter = ("organization", "content_type", ("created_at", admin.DateFieldListFilter))
    search_fields = ("name", "=sha256", "=id")
    list_select_related = ("organization", "created_by")
    readonly_fields = ("organization", "name", "storage_key", "size", "content_type", "declared_content_type",
                       "sha256", "agent_id", "execution_id", "metadata", "created_by", "created_at", "updated_at")

    def has_add_permission(self, request):
        return False
