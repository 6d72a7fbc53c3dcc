from django.contrib import admin

from apps.stepup.models import BackupCode, WebAuthnCredential


@admin.register(WebAuthnCredential)
class WebAuthnCredentialAdmin(admin.ModelAdmin):
    list_display = ("name", "user", "device_type", "sign_count", "created_at", "last_used_at")
    list_select_related = ("user",)
    search_fields = ("name", "user__email", "credential_id")
    readonly_fields = (
        "user",
        "credential_id",
        "public_key",
        "sign_count",
        "aaguid",
        "transports",
        "device_type",
        "backed_up",
        "created_at",
        "last_used_at",
    )
    actions = ["delete_selected"]


@admin.register(BackupCode)
class BackupCodeAdmin(admin.ModelAdmin):
    list_display = ("user", "created_at", "used_at")
    list_select_related = ("user",)
    search_fields = ("user__email",)
    readonly_fields = ("user", "digest", "created_at", "used_at")
    actions = ["delete_selected"]

    def has_add_permission(self, request):
        return False  # codes are issued by apps.stepup.services (only their digests are stored)
