from django.contrib import admin

from apps.voice.models import VoiceCommand, VoiceSettings


@admin.register(VoiceCommand)
class VoiceCommandAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "organization",
        "created_by",
        "input_type",
        "transcribed_text",
        "understood",
        "target_agent",
    )
    list_filter = ("input_type", "understood", "organization")
    list_select_related = ("organization", "created_by", "target_agent")
    search_fields = ("transcribed_text", "created_by__email")
    readonly_fields = [f.name for f in VoiceCommand._meta.fields]


@admin.register(VoiceSettings)
class VoiceSettingsAdmin(admin.ModelAdmin):
    list_display = ("user", "organization", "updated_at")
    list_select_related = ("user", "organization")
    search_fields = ("user__email",)
