"""How long an organization's data is kept (``RetentionPolicy``) and what each prune removed
(``RetentionRun``)."""

from __future__ import annotations

from django.db import models

from kai_platform.tenancy.models import TenantModel

#: the kinds of data a policy covers: field of the policy → what it keeps
KINDS = {
    "executions_days": "runs with their logs, spans, events of the run, step runs and approvals",
    "events_days": "the event log (hub, events API, exports)",
    "usage_days": "usage detail (per agent, model and day)",
    "audit_days": "audit rows",
    "webhook_deliveries_days": "webhook deliveries",
    "files_days": "files attached to finished runs",
}


class Keep(models.TextChoices):
    ALL = "all", "every finished run for executions_days"
    FAILED_ONLY = "failed_only", "failed and cancelled runs for executions_days; completed ones for a day"


class RetentionPolicy(TenantModel):
    """One per organization; a null number of days means the plan's default."""

    executions_days = models.PositiveIntegerField(null=True, blank=True)
    events_days = models.PositiveIntegerField(null=True, blank=True)
    usage_days = models.PositiveIntegerField(null=True, blank=True)
    audit_days = models.PositiveIntegerField(null=True, blank=True)
    webhook_deliveries_days = models.PositiveIntegerField(null=True, blank=True)
    files_days = models.PositiveIntegerField(null=True, blank=True)
    keep = models.CharField(max_length=16, choices=Keep.choices, default=Keep.ALL)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization"], name="retention_policy_one_per_org")]


class RetentionRun(TenantModel):
    """One prune of one organization that removed something: rows removed per kind, cutoffs."""

    finished_at = models.DateTimeField(null=True, blank=True)
    counts = models.JSONField(default=dict)
    cutoffs = models.JSONField(default=dict)
    seconds = models.FloatField(default=0)

    class Meta:
        ordering = ("-created_at",)
