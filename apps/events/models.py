"""The sequenced event log. ``id`` is the sequence number (``seq``) clients resume from."""

from django.conf import settings
from django.db import models

from kai_platform.tenancy.models import TenantManager


class Severity(models.TextChoices):
    DEBUG = "debug", "Debug"
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    ERROR = "error", "Error"
    CRITICAL = "critical", "Critical"


class Event(models.Model):
    id = models.BigAutoField(primary_key=True)
    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="+")
    type = models.CharField(max_length=100)
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.INFO)
    component = models.CharField(max_length=50, blank=True, help_text="Area that emitted it (agents, runs, system…).")
    agent_id = models.UUIDField(null=True, blank=True, db_index=True)
    execution_id = models.UUIDField(null=True, blank=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Who caused it.",
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Whose resource it concerns.",
    )
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = TenantManager()

    class Meta:
        ordering = ("id",)
        indexes = [
            models.Index(fields=["organization", "id"], name="event_org_seq"),
            models.Index(fields=["organization", "type", "id"], name="event_org_type_seq"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.type}"

    @property
    def seq(self) -> int:
        return self.pk
