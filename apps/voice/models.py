"""Voice commands (``voice/*``, docs/voice.md): each processed command with its transcript, parsed
intent and agent routing, and each member's voice settings."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from kai_platform.tenancy.models import TenantModel


class InputType(models.TextChoices):
    AUDIO = "audio", "Audio"
    TEXT = "text", "Text fallback"


class VoiceCommand(TenantModel):
    input_type = models.CharField(max_length=10, choices=InputType.choices)
    language = models.CharField(max_length=35, blank=True)
    detected_language = models.CharField(max_length=35, blank=True)
    transcribed_text = models.TextField(blank=True)
    confidence_score = models.FloatField(default=0.0)
    audio_bytes = models.PositiveIntegerField(default=0)
    stt_provider = models.CharField(max_length=100, blank=True)
    intent = models.JSONField(default=dict, blank=True)
    routing = models.JSONField(default=dict, blank=True)
    understood = models.BooleanField(default=False)
    target_agent = models.ForeignKey(
        "agents.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="voice_commands"
    )
    response_text = models.TextField(blank=True)
    execution_id = models.UUIDField(null=True, blank=True)
    context = models.JSONField(default=dict, blank=True)
    processing_ms = models.FloatField(default=0.0)

    # the reply's extras voice_process sets on the command it returns (not stored)
    suggestions: list[str]
    requires_followup: bool
    note: str

    class Meta(TenantModel.Meta):
        indexes = [models.Index(fields=["organization", "-created_at"], name="voice_cmd_org_created")]

    def __str__(self) -> str:
        return (self.transcribed_text or "")[:60]


class VoiceSettings(TenantModel):
    """One member's voice settings in one organization (``VoiceSettings``, docs/voice.md)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="voice_settings")
    settings = models.JSONField(default=dict, blank=True)

    class Meta(TenantModel.Meta):
        verbose_name_plural = "voice settings"
        constraints = [models.UniqueConstraint(fields=["organization", "user"], name="uniq_voice_settings_member")]


class TrainingPhrase(TenantModel):
    """A phrase the organization taught its intent router (``voice/train``, docs/voice.md): a command
    starting with it (or containing it) parses as ``intent``."""

    intent = models.CharField(max_length=50)
    phrase = models.CharField(max_length=200, help_text="Normalized: lower case, words only.")

    class Meta(TenantModel.Meta):
        constraints = [
            models.UniqueConstraint(fields=["organization", "intent", "phrase"], name="uniq_voice_training_phrase")
        ]
        indexes = [models.Index(fields=["organization", "intent"], name="voice_train_org_intent")]

    def __str__(self) -> str:
        return f"{self.intent}: {self.phrase}"
