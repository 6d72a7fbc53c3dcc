from django.contrib import admin

from apps.stepup.models import WebAuthnCredential


@admin.register(WebAuthnCredential)
class WebAuthnCredentialAdmin(admin.ModelAdmin):
    list_display = ("name", "user", "device_type", "sign_count", "created_at", "last_used_at")
    list_select_related = ("user",)
    search_fields = ("name", "user__email", "credential_id")
    readonly_fields = ("user", "credential_id", "public_key", "sign_count", "aaguid", "transports", "device_type",
                       "backed_up", "created_at", "last_used_at")
    actions = ["delete_selected"]
