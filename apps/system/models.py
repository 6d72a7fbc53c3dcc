"""System management: versioned configuration changes (``SystemModification``) and the rolled-up
metric rows behind ``GET /api/v1/metrics`` (``MetricRollup``)."""

from django.db import models

from kai_platform.tenancy.models import TenantManager, TenantModel


class ModificationType(models.TextChoices):
    AGENT_CONFIG = "agent_config", "Agent configuration"
    WORKFLOW_CHANGE = "workflow_change", "Workflow definition"
    SYSTEM_SETTING = "system_setting", "Organization settings"
    ARCHITECTURE_CHANGE = "architecture_change", "Architecture (diagram layout and metadata)"


class SystemModification(TenantModel):
    """One applied change (docs/observability.md): what it touched, the state before and after, who applied it,
    and whether it can still be rolled back. A rollback is itself a modification (``rollback_of``)."""

    type = models.CharField(max_length=32, choices=ModificationType.choices)
    description = models.CharField(max_length=500, blank=True)
    target_model = models.CharField(max_length=100, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    before_state = models.JSONField(default=dict, blank=True)
    after_state = models.JSONField(default=dict, blank=True)
    applied_by = models.ForeignKey("accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    applied_at = models.DateTimeField(auto_now_add=True, db_index=True)
    rollback_available = models.BooleanField(default=True)
    rolled_back_at = models.DateTimeField(null=True, blank=True)
    rollback_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="rollbacks")
    impact_assessment = models.TextField(blank=True)

    class Meta(TenantModel.Meta):
        ordering = ("-applied_at", "-created_at")
        indexes = [models.Index(fields=["organization", "-applied_at"], name="sysmod_org_recent")]

    def __str__(self) -> str:
        return f"{self.type} {self.target_model}:{self.target_id}"


class MetricRollup(models.Model):
    """One value of one metric for one organization (or the platform, ``organization=None``) over
    one minute, per label set. Filled by the ``apps.system.tasks.rollup_metrics`` beat task."""

    id = models.BigAutoField(primary_key=True)
    organization = models.ForeignKey(
        "accounts.Organization", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    name = models.CharField(max_length=100)
    bucket = models.DateTimeField(help_text="Start of the minute (UTC).")
    labels = models.JSONField(default=dict, blank=True)
    label_key = models.CharField(max_length=200, blank=True, help_text="Canonical form of labels (unique key).")
    value = models.FloatField(default=0)

    objects = TenantManager()

    class Meta:
        ordering = ("bucket",)
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "name", "bucket", "label_key"], name="uniq_metric_rollup", nulls_distinct=False
            )
        ]
        indexes = [models.Index(fields=["organization", "name", "bucket"], name="metric_org_name_bucket")]

    def __str__(self) -> str:
        return f"{self.name}{self.labels or ''}@{self.bucket:%Y-%m-%d %H:%M} = {self.value}"


class Maintenance(models.Model):
    """The platform's maintenance mode, one row (``scope="platform"``): while active, new runs answer 503
    ``GENERAL_004`` with ``Retry-After``, and sockets hear ``maintenance_mode``. Platform-wide,
    not tenant data; set through ``services.maintenance_set``."""

    scope = models.CharField(max_length=32, unique=True, default="platform", editable=False)
    enabled = models.BooleanField(default=False)
    message = models.CharField(max_length=500, blank=True)
    until = models.DateTimeField(null=True, blank=True, help_text="Expected end; maintenance ends by itself then.")
    started_at = models.DateTimeField(null=True, blank=True)
    updated_by = models.ForeignKey("accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "maintenance"

    def __str__(self) -> str:
        return "maintenance on" if self.enabled else "maintenance off"


class AlertSeverity(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    ERROR = "error", "Error"
    CRITICAL = "critical", "Critical"


class AlertStatus(models.TextChoices):
    INVESTIGATING = "investigating", "Investigating"
    IDENTIFIED = "identified", "Identified"
    MONITORING = "monitoring", "Monitoring"
    RESOLVED = "resolved", "Resolved"
    INFORMATIONAL = "informational", "Informational"


class SystemAlert(models.Model):
    """An operator broadcast (``system_alert``, docs/realtime.md) to every organization's members.
    Platform-wide, not tenant data; written by ``services.system_alert_broadcast``."""

    id = models.BigAutoField(primary_key=True)
    severity = models.CharField(max_length=16, choices=AlertSeverity.choices, default=AlertSeverity.WARNING)
    type = models.CharField(max_length=64, default="operator_notice")
    message = models.CharField(max_length=1000)
    affected_components = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=16, choices=AlertStatus.choices, default=AlertStatus.INVESTIGATING)
    estimated_resolution = models.DateTimeField(null=True, blank=True)
    organizations_reached = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey("accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"[{self.severity}] {self.message[:60]}"

    @property
    def alert_id(self) -> str:
        return f"alert_{self.pk}"
