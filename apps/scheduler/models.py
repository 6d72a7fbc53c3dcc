"""Schedules: a cron expression in a time zone that starts a run of a crew, an agent task or a workflow.

``Schedule`` is the source of truth; ``apps.scheduler.services`` keeps its
``django_celery_beat.PeriodicTask`` in step in the same transaction (docs/scheduler.md).
"""

from __future__ import annotations

from django.db import models

from kai_platform.tenancy.models import TenantModel


class TargetType(models.TextChoices):
    CREW = "crew", "Crew"
    AGENT_TASK = "agent_task", "Agent task"
    WORKFLOW = "workflow", "Workflow"


class MisfirePolicy(models.TextChoices):
    RUN_ONCE = "run_once", "Run once for the missed ticks"
    SKIP = "skip", "Skip the missed ticks"


class Schedule(TenantModel):
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    cron_expression = models.CharField(
        max_length=120, help_text="5 fields: minute hour day-of-month month day-of-week."
    )
    timezone = models.CharField(max_length=64, default="UTC", help_text="IANA name; ticks follow its DST.")
    target_type = models.CharField(max_length=20, choices=TargetType.choices, default=TargetType.CREW)
    crew = models.ForeignKey("crews.Crew", null=True, blank=True, on_delete=models.SET_NULL, related_name="schedules")
    agent = models.ForeignKey(
        "agents.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="schedules"
    )
    workflow = models.ForeignKey(
        "workflows.Workflow", null=True, blank=True, on_delete=models.SET_NULL, related_name="schedules"
    )
    inputs = models.JSONField(default=dict, blank=True)
    task = models.JSONField(default=dict, blank=True, help_text="agent_task: {description, expected_output}.")
    enabled = models.BooleanField(default=True)
    misfire_policy = models.CharField(max_length=10, choices=MisfirePolicy.choices, default=MisfirePolicy.RUN_ONCE)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_tick_at = models.DateTimeField(null=True, blank=True, help_text="The tick of the last fired run.")
    last_execution = models.ForeignKey(
        "runs.Execution", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="kai_schedule",
        editable=False,
    )

    class Meta(TenantModel.Meta):
        indexes = [models.Index(fields=["organization", "-created_at"], name="schedule_org_created")]

    def __str__(self) -> str:
        return f"{self.name} ({self.cron_expression} {self.timezone})"
