"""Operator console for the organizations' JSON Schemas (read-mostly: they are written through the API)."""

from django.contrib import admin

from apps.schemas.models import JsonSchema, JsonSchemaVersion


class VersionInline(admin.TabularInline):
    model = JsonSchemaVersion
    fields = ("version", "schema", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(JsonSchema)
class JsonSchemaAdmin(admin.ModelAdmin):
    list_display = ("name", "version", "organization", "updated_at")
    list_filter = ("organization",)
    search_fields = ("=id", "name")
    list_select_related = ("organization",)
    readonly_fields = ("organization", "version", "created_by", "created_at", "updated_at")
    inlines = [VersionInline]

    def has_add_permission(self, request):
        return False  # created through the API (the document is checked against the meta-schema)
