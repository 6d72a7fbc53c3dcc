"""The run engine's records: one ``Execution`` per run of any kind, its status history, logs,
trace spans and the usage rollup.

``Execution.status`` changes only through ``apps.runs.services.execution_transition``; every change
leaves an ``ExecutionEvent``. Logs and spans are written in batches by ``apps.runs.recorder``.
The tables keep the names they had when these models lived in ``apps.crews``.
"""

from __future__ import annotations

import uuid

from django.db import models

from kai_platform.telemetry import current_trace_id
from kai_platform.tenancy.models import TenantModel


def new_trace_id() -> str:
    """The OpenTelemetry trace being recorded (the API request that creates the run), else a new id."""
    return current_trace_id() or uuid.uuid4().hex


class ExecutionKind(models.TextChoices):
    CREW = "crew", "Crew"
    ORCHESTRATION = "orchestration", "Orchestration"
    AGENT_TASK = "agent_task", "Agent task"
    AGENT_COMMAND = "agent_command", "Agent command"
    AGENT_EXECUTE = "agent_execute", "Agent execute"
    AGENT_PROMPT = "agent_prompt", "Agent stream-prompt"
    AGENT_TEST = "agent_test", "Agent test"
    WORKFLOW = "workflow", "Workflow"
    WORKFLOW_STEP = "workflow_step", "Workflow step"


class ExecutionStatus(models.TextChoices):
    PENDING = "PENDING", "Pending"
    PREPARING = "PREPARING", "Preparing"
    RUNNING = "RUNNING", "Running"
    COMPLETED = "COMPLETED", "Completed"
    FAILED = "FAILED", "Failed"
    CANCELLED = "CANCELLED", "Cancelled"
    WAITING_FOR_APPROVAL = "WAITING_FOR_APPROVAL", "Waiting for approval"


TERMINAL_STATUSES = frozenset({ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED})
ACTIVE_STATUSES = frozenset({ExecutionStatus.PREPARING, ExecutionStatus.RUNNING})


class Execution(TenantModel):
    kind = models.CharField(max_length=20, choices=ExecutionKind.choices)
    status = models.CharField(
        max_length=24, choices=ExecutionStatus.choices, default=ExecutionStatus.PENDING, editable=False
    )
    run_name = models.CharField(max_length=300, blank=True)
    crew = models.ForeignKey("crews.Crew", null=True, blank=True, on_delete=models.SET_NULL, related_name="executions")
    orchestration = models.ForeignKey(
        "crews.Orchestration", null=True, blank=True, on_delete=models.SET_NULL, related_name="executions"
    )
    agent = models.ForeignKey(
        "agents.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="executions"
    )
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")
    inputs = models.JSONField(default=dict, blank=True)
    definition = models.JSONField(
        default=dict, blank=True, help_text="What runs, frozen at creation (crew YAML, task, command)."
    )
    params = models.JSONField(default=dict, blank=True, help_text="LLM parameters of this run.")
    model = models.CharField(max_length=200, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    trace_id = models.CharField(max_length=32, default=new_trace_id, db_index=True)
    stream_id = models.CharField(max_length=40, blank=True)
    priority = models.PositiveSmallIntegerField(default=5, help_text="0 (lowest) … 9 (highest).")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    attempts = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField(
        default=1, help_text="Runs lost with their worker are requeued until this many attempts were made."
    )
    worker = models.CharField(max_length=200, blank=True)
    tokens_in = models.BigIntegerField(default=0)
    tokens_out = models.BigIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    log_seq = models.BigIntegerField(default=0, editable=False, help_text="Last sequence number handed to a log row.")
    dedupe_key = models.CharField(
        max_length=200,
        null=True,
        blank=True,
        unique=True,
        help_text="Callers that must not create a run twice (schedule ticks) key it.",
    )
    checkpoint = models.JSONField(
        default=dict,
        blank=True,
        help_text="What a run parked WAITING_FOR_APPROVAL resumes from (completed tasks' outputs, the pending step).",
    )
    replayed_from = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="replays",
        help_text="The run whose steps before ``from_step`` this run reused.",
    )

    class Meta(TenantModel.Meta):
        db_table = "crews_execution"
        indexes = [
            models.Index(fields=["organization", "-created_at"], name="exec_org_created"),
            models.Index(fields=["organization", "status"], name="exec_org_status"),
            models.Index(fields=["agent", "-created_at"], name="exec_agent_created"),
            models.Index(fields=["status", "heartbeat_at"], name="exec_status_heartbeat"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["stream_id"], condition=~models.Q(stream_id=""), name="uniq_execution_stream_id"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.pk} {self.status}"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def total_tokens(self) -> int:
        return self.tokens_in + self.tokens_out

    @property
    def duration_ms(self) -> float | None:
        if self.started_at and self.completed_at:
            return round((self.completed_at - self.started_at).total_seconds() * 1000, 2)
        return None


class StepKind(models.TextChoices):
    LLM = "llm", "Model call"
    TOOL = "tool", "Tool call"
    TASK = "task", "Task"


class ExecutionStep(models.Model):
    """One completed step of a run (a model call, a tool call, a whole task): the durable step log
    a run resumed on another worker, or replayed, answers from (``apps.runs.checkpoints``)."""

    id = models.BigAutoField(primary_key=True)
    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="+")
    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="steps")
    key = models.CharField(max_length=120, help_text="kind:request hash:occurrence — the same call of a rerun has it.")
    kind = models.CharField(max_length=10, choices=StepKind.choices)
    step = models.CharField(max_length=300, blank=True, help_text="The task (or step) of the run it belongs to.")
    step_index = models.PositiveIntegerField(default=0, help_text="Order in which the run started that step.")
    response = models.JSONField(default=dict)
    created_at = models.DateTimeField()

    class Meta:
        db_table = "crews_executionstep"
        ordering = ("execution", "id")
        constraints = [models.UniqueConstraint(fields=["execution", "key"], name="uniq_execution_step_key")]

    def __str__(self) -> str:
        return f"{self.kind} {self.step} {self.key[:24]}"


class ExecutionEvent(models.Model):
    """One status change of an execution (written by the transition service only)."""

    id = models.BigAutoField(primary_key=True)
    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="+")
    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="events")
    from_status = models.CharField(max_length=24, blank=True)
    to_status = models.CharField(max_length=24)
    reason = models.TextField(blank=True)
    at = models.DateTimeField(db_index=True)

    class Meta:
        db_table = "crews_executionevent"
        ordering = ("id",)

    def __str__(self) -> str:
        return f"{self.from_status or '∅'} → {self.to_status}"


class LogLevel(models.TextChoices):
    DEBUG = "debug", "Debug"
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    ERROR = "error", "Error"


class ExecutionLog(models.Model):
    id = models.BigAutoField(primary_key=True)
    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="+")
    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="logs")
    seq = models.BigIntegerField()
    level = models.CharField(max_length=10, choices=LogLevel.choices, default=LogLevel.INFO)
    message = models.TextField()
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        db_table = "crews_executionlog"
        ordering = ("execution", "seq")
        constraints = [models.UniqueConstraint(fields=["execution", "seq"], name="uniq_execution_log_seq")]

    def __str__(self) -> str:
        return f"#{self.seq} {self.message[:60]}"


class SpanKind(models.TextChoices):
    LLM = "llm", "LLM call"
    TOOL = "tool", "Tool call"
    AGENT = "agent", "Agent"
    TASK = "task", "Task"


class TraceSpan(models.Model):
    id = models.BigAutoField(primary_key=True)
    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="+")
    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="spans")
    trace_id = models.CharField(max_length=32, db_index=True)
    span_id = models.CharField(max_length=16)
    parent_span_id = models.CharField(max_length=16, blank=True)
    kind = models.CharField(max_length=10, choices=SpanKind.choices)
    name = models.CharField(max_length=300)
    status = models.CharField(max_length=10, default="ok")
    agent_id = models.UUIDField(null=True, blank=True)
    model = models.CharField(max_length=200, blank=True)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    tokens_in = models.IntegerField(default=0)
    tokens_out = models.IntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    attributes = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "crews_tracespan"
        ordering = ("started_at", "id")
        constraints = [models.UniqueConstraint(fields=["execution", "span_id"], name="uniq_execution_span")]

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


class UsageRollup(TenantModel):
    """LLM usage of one organization, per agent (or none), day (UTC) and model."""

    agent_id = models.UUIDField(null=True, blank=True, help_text="Kept after the agent is deleted.")
    agent_name = models.CharField(max_length=200, blank=True)
    day = models.DateField()
    model = models.CharField(max_length=200)
    executions = models.PositiveIntegerField(default=0)
    llm_calls = models.PositiveIntegerField(default=0)
    tokens_in = models.BigIntegerField(default=0)
    tokens_out = models.BigIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=6, default=0)

    class Meta(TenantModel.Meta):
        db_table = "crews_usagerollup"
        ordering = ("-day",)
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "agent_id", "day", "model"], name="uniq_usage_rollup", nulls_distinct=False
            )
        ]
        indexes = [models.Index(fields=["organization", "day"], name="usage_org_day")]
