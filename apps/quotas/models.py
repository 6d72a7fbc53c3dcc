"""Plan quotas as data: each plan's limits, per-organization overrides, the ledger of counted
units for quotas without a table of their own, and refusals worth keeping (scheduled ticks)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from apps.accounts.models import Plan
from kai_platform.tenancy.models import TenantModel


class QuotaPlan(models.Model):
    """The limits of one plan; every organization on the plan gets them unless overridden."""

    plan = models.CharField(max_length=20, choices=Plan.choices, unique=True)
    agent_executions_per_hour = models.PositiveIntegerField(
        help_text="Runs of agents, crews and orchestrations accepted per sliding hour."
    )
    workflow_executions_per_day = models.PositiveIntegerField(help_text="Workflow runs accepted per sliding 24 hours.")
    voice_commands_per_hour = models.PositiveIntegerField(help_text="Voice commands accepted per sliding hour.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("agent_executions_per_hour",)
        verbose_name = "plan quota"

    def __str__(self) -> str:
        return self.get_plan_display()


class QuotaOverride(models.Model):
    """Custom limits for one organization (e.g. a paying customer); an empty field keeps the plan's."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.OneToOneField(
        "accounts.Organization", on_delete=models.CASCADE, related_name="quota_override"
    )
    agent_executions_per_hour = models.PositiveIntegerField(null=True, blank=True)
    workflow_executions_per_day = models.PositiveIntegerField(null=True, blank=True)
    voice_commands_per_hour = models.PositiveIntegerField(null=True, blank=True)
    note = models.TextField(blank=True, help_text="Why these limits (contract, ticket…).")
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("-updated_at",)
        verbose_name = "organization quota override"

    def __str__(self) -> str:
        return f"custom limits of {self.organization_id}"


class QuotaUsage(TenantModel):
    """One counted consumption of a ledger quota (voice commands…): the database's record of what
    the Redis window counted, so a Redis that lost its keys is rebuilt from here."""

    quota = models.CharField(max_length=40)
    amount = models.PositiveIntegerField(default=1)
    source = models.CharField(max_length=40, blank=True, help_text="rest, socket, mcp, schedule, workflow…")
    ref = models.CharField(
        max_length=200,
        blank=True,
        help_text="The caller's id of what was counted; a second consume with the same ref counts nothing.",
    )

    class Meta(TenantModel.Meta):
        indexes = [models.Index(fields=["organization", "quota", "created_at"], name="quota_usage_window")]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "quota", "ref"], condition=~models.Q(ref=""), name="uniq_quota_usage_ref"
            )
        ]

    def __str__(self) -> str:
        return f"{self.quota} ×{self.amount}"


class QuotaRefusal(TenantModel):
    """A run refused by a quota that nobody was there to see (a scheduled tick): kept for its history."""

    quota = models.CharField(max_length=40)
    limit = models.PositiveIntegerField()
    used = models.PositiveIntegerField()
    window_seconds = models.PositiveIntegerField()
    reset_at = models.DateTimeField(null=True, blank=True)
    source = models.CharField(max_length=40, help_text="What was refused: schedule, …")
    source_id = models.CharField(max_length=64, blank=True, db_index=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta(TenantModel.Meta):
        indexes = [
            models.Index(fields=["organization", "source", "source_id", "-created_at"], name="quota_refusal_source")
        ]

    def __str__(self) -> str:
        return f"{self.source} {self.source_id} refused by {self.quota}"
