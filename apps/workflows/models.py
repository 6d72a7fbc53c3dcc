"""Workflows (docs/workflows.md): DAG definitions, their versions, runs and step runs.

A run is an ``Execution`` of kind ``workflow`` (its status, cancel flag and events are the run
engine's) plus a ``WorkflowRun`` holding what only a DAG has: the version it runs, its trigger,
its deadline. Each attempt of a step is a ``StepRun`` with an ``Execution`` of kind
``workflow_step``, a child of the run's execution, so logs, traces, cost, cancel and crash
recovery come from the run engine.
"""

from __future__ import annotations

import secrets

from django.db import models

from kai_platform.api.errors import codes
from kai_platform.tenancy.models import TenantModel


def new_webhook_token() -> str:
    return secrets.token_urlsafe(24)


class TriggerType(models.TextChoices):
    MANUAL = "manual", "Manual"
    SCHEDULE = "schedule", "Schedule"
    WEBHOOK = "webhook", "Webhook"
    AGENT_COMPLETION = "agent_completion", "Agent completion"
    VOICE_COMMAND = "voice_command", "Voice command"


class Workflow(TenantModel):
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    definition = models.JSONField(help_text="The current version's definition (seed 002 WorkflowDefinition).")
    version = models.PositiveIntegerField(default=1, editable=False)
    is_active = models.BooleanField(default=True)
    trigger_type = models.CharField(
        max_length=20,
        choices=TriggerType.choices,
        default=TriggerType.MANUAL,
        editable=False,
        help_text="definition.trigger.type, for lookups.",
    )
    trigger_agent = models.ForeignKey(
        "agents.Agent",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="triggered_workflows",
        editable=False,
        help_text="agent_completion: the source agent.",
    )
    webhook_token = models.CharField(max_length=64, unique=True, default=new_webhook_token, editable=False)
    webhook_secret = models.TextField(blank=True, editable=False, help_text="Encrypted HMAC key of the webhook.")
    last_executed = models.DateTimeField(null=True, blank=True, editable=False)
    execution_count = models.PositiveIntegerField(default=0, editable=False)
    success_count = models.PositiveIntegerField(default=0, editable=False)
    failure_count = models.PositiveIntegerField(default=0, editable=False)

    #: the error code of the 404 for an unknown one (docs/api.md)
    not_found_code = codes.WORKFLOW_NOT_FOUND

    class Meta(TenantModel.Meta):
        indexes = [
            models.Index(fields=["organization", "-created_at"], name="workflow_org_created"),
            models.Index(fields=["organization", "trigger_type", "is_active"], name="workflow_org_trigger"),
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"

    @property
    def success_rate(self) -> float:
        """Share of ended runs (completed or failed; cancelled runs are left out) that completed."""
        ended = self.success_count + self.failure_count
        return round(self.success_count / ended, 4) if ended else 0.0


class WorkflowVersion(TenantModel):
    """A definition as it was saved; runs point at the version they ran."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    definition = models.JSONField()

    class Meta(TenantModel.Meta):
        ordering = ("-version",)
        constraints = [models.UniqueConstraint(fields=["workflow", "version"], name="uniq_workflow_version")]

    def __str__(self) -> str:
        return f"{self.workflow_id} v{self.version}"


class Phase(models.TextChoices):
    MAIN = "main", "Main steps"
    FAILING = "failing", "Stopping after a failure"
    FALLBACK = "fallback", "Running fallback steps"
    CANCELLING = "cancelling", "Cancelling"


class WorkflowRun(TenantModel):
    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="runs")
    workflow_version = models.ForeignKey(WorkflowVersion, on_delete=models.CASCADE, related_name="runs")
    version = models.PositiveIntegerField()
    execution = models.OneToOneField("runs.Execution", on_delete=models.CASCADE, related_name="workflow_run")
    trigger_type = models.CharField(max_length=20, choices=TriggerType.choices, default=TriggerType.MANUAL)
    trigger_source = models.CharField(max_length=300, blank=True)
    trigger_data = models.JSONField(default=dict, blank=True)
    inputs = models.JSONField(default=dict, blank=True)
    phase = models.CharField(max_length=12, choices=Phase.choices, default=Phase.MAIN)
    failed_step = models.CharField(max_length=100, blank=True)
    error = models.TextField(blank=True)
    results = models.JSONField(default=dict, blank=True)
    deadline_at = models.DateTimeField(null=True, blank=True)
    advanced_at = models.DateTimeField(null=True, blank=True, help_text="Last time the DAG was advanced.")
    counted = models.BooleanField(default=False, help_text="Its outcome is in the workflow's success counters.")

    class Meta(TenantModel.Meta):
        indexes = [
            models.Index(fields=["workflow", "-created_at"], name="wfrun_workflow_created"),
            models.Index(fields=["organization", "-created_at"], name="wfrun_org_created"),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} of {self.workflow_id} v{self.version}"


class StepState(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled (waiting for its retry delay)"
    ACTIVE = "active", "Active (its execution runs)"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    TIMED_OUT = "timed_out", "Timed out"
    CANCELLED = "cancelled", "Cancelled"
    SKIPPED = "skipped", "Skipped"


LIVE_STEP_STATES = (StepState.SCHEDULED, StepState.ACTIVE)
FAILED_STEP_STATES = (StepState.FAILED, StepState.TIMED_OUT, StepState.CANCELLED)


class StepRun(TenantModel):
    """One attempt of one step of a run."""

    run = models.ForeignKey(WorkflowRun, on_delete=models.CASCADE, related_name="step_runs")
    step_id = models.CharField(max_length=100)
    fallback = models.BooleanField(default=False, help_text="A step of error_handling.fallback_steps.")
    attempt = models.PositiveSmallIntegerField(default=1)
    state = models.CharField(max_length=10, choices=StepState.choices, default=StepState.ACTIVE)
    execution = models.OneToOneField(
        "runs.Execution", null=True, blank=True, on_delete=models.SET_NULL, related_name="step_run"
    )
    agent = models.ForeignKey("agents.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    inputs = models.JSONField(default=dict, blank=True, help_text="The parameters, templates filled in.")
    output = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    timed_out = models.BooleanField(default=False, help_text="Its execution was cancelled for exceeding timeout_ms.")
    scheduled_for = models.DateTimeField(null=True, blank=True, help_text="A retry starts no earlier than this.")
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta(TenantModel.Meta):
        ordering = ("created_at", "step_id", "attempt")
        constraints = [
            models.UniqueConstraint(fields=["run", "step_id", "attempt"], name="uniq_step_attempt"),
            # a step never has two live attempts: it never runs twice at once
            models.UniqueConstraint(
                fields=["run", "step_id"], condition=models.Q(state__in=["scheduled", "active"]), name="uniq_live_step"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.step_id} #{self.attempt} {self.state}"

    @property
    def duration_ms(self) -> float | None:
        if self.started_at and self.completed_at:
            return round((self.completed_at - self.started_at).total_seconds() * 1000, 2)
        return None
