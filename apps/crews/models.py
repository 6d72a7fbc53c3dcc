"""Crews, orchestrations and task definitions. Their runs are ``apps.runs`` executions."""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models

from kai_platform.tenancy.models import TenantModel


class Process(models.TextChoices):
    SEQUENTIAL = "sequential", "Sequential"
    HIERARCHICAL = "hierarchical", "Hierarchical"


class Crew(TenantModel):
    """A team of agents and their tasks, in CrewAI's YAML format (``agents.yaml`` / ``tasks.yaml``)."""

    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    agents_yaml = models.TextField()
    tasks_yaml = models.TextField()
    model = models.CharField(max_length=200, blank=True, help_text="Default model of agents that name none.")
    process = models.CharField(max_length=20, choices=Process.choices, default=Process.SEQUENTIAL)
    verbose = models.BooleanField(default=False)
    config = models.JSONField(default=dict, blank=True)

    class Meta(TenantModel.Meta):
        indexes = [models.Index(fields=["organization", "-created_at"], name="crew_org_created")]

    def __str__(self) -> str:
        return self.name


class Pattern(models.TextChoices):
    SEQUENTIAL = "sequential", "Sequential"
    HIERARCHICAL = "hierarchical", "Hierarchical"
    SUPERVISOR_WORKER = "supervisor_worker", "Supervisor / worker"
    ROUTER = "router", "Router"
    ENSEMBLE = "ensemble", "Ensemble"
    PARALLEL = "parallel", "Parallel"


class OrchestrationStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    ACTIVE = "active", "Active"


class Orchestration(TenantModel):
    """A multi-agent pattern over the organization's agents (seed 003)."""

    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    pattern = models.CharField(max_length=30, choices=Pattern.choices, default=Pattern.SEQUENTIAL)
    config_yaml = models.TextField(blank=True)
    agent_ids = ArrayField(models.UUIDField(), default=list, blank=True)
    status = models.CharField(max_length=10, choices=OrchestrationStatus.choices, default=OrchestrationStatus.DRAFT)

    def __str__(self) -> str:
        return f"{self.name} ({self.pattern})"


class TaskDefinition(TenantModel):
    """A reusable task (seed 001 ``/tasks``): what to do, what to hand back, who does it."""

    name = models.CharField(max_length=200)
    description = models.TextField()
    expected_output = models.TextField(blank=True)
    agent = models.CharField(max_length=200, blank=True, help_text="CrewAI agent key, agent name or agent id.")
    tools = ArrayField(models.CharField(max_length=100), default=list, blank=True)
    context = ArrayField(
        models.CharField(max_length=200),
        default=list,
        blank=True,
        help_text="Names of tasks whose output this task reads.",
    )
    async_execution = models.BooleanField(default=False)
    config = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return self.name
