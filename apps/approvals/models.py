"""Human-in-the-loop approvals: a run (crew task output, tool call, workflow step) parked until a
person answers, or until its deadline applies the configured default."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from kai_platform.tenancy.models import TenantModel


class ApprovalSource(models.TextChoices):
    CREW_TASK = "crew_task", "Crew task output (human_input)"
    TOOL_CALL = "tool_call", "Tool call (requires_approval)"
    WORKFLOW_STEP = "workflow_step", "Workflow approval step"


class ApprovalStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    CANCELLED = "cancelled", "Cancelled (the run ended)"


class DefaultAction(models.TextChoices):
    APPROVE = "approve", "Approve"
    REJECT = "reject", "Reject"


class Approval(TenantModel):
    source = models.CharField(max_length=20, choices=ApprovalSource.choices, default=ApprovalSource.CREW_TASK)
    execution = models.ForeignKey(
        "runs.Execution", null=True, blank=True, on_delete=models.CASCADE, related_name="approvals"
    )
    workflow_run_id = models.UUIDField(
        null=True, blank=True, db_index=True, help_text="The workflow run an approval step belongs to."
    )
    step_id = models.CharField(max_length=200, blank=True, help_text="Crew task key or workflow step id.")
    question = models.TextField()
    proposed = models.JSONField(default=dict, blank=True, help_text="The proposed output or tool call.")
    assignee_role = models.CharField(
        max_length=20, blank=True, help_text="The lowest role that may answer (owner ≥ admin ≥ developer ≥ user)."
    )
    assignee_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Only this member (or an owner/admin) may answer.",
    )
    deadline = models.DateTimeField(null=True, blank=True)
    default_action = models.CharField(
        max_length=10,
        choices=DefaultAction.choices,
        default=DefaultAction.REJECT,
        help_text="Applied when the deadline passes unanswered.",
    )
    status = models.CharField(
        max_length=10, choices=ApprovalStatus.choices, default=ApprovalStatus.PENDING, editable=False
    )
    edited_value = models.JSONField(null=True, blank=True, help_text="What the approver put in place of `proposed`.")
    feedback = models.TextField(blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    resolved_at = models.DateTimeField(null=True, blank=True, editable=False)
    timed_out = models.BooleanField(
        default=False, editable=False, help_text="Resolved by the deadline's default, not by a person."
    )

    class Meta(TenantModel.Meta):
        indexes = [
            models.Index(fields=["organization", "status", "-created_at"], name="approval_org_status"),
            models.Index(fields=["status", "deadline"], name="approval_status_deadline"),
        ]

    def __str__(self) -> str:
        return f"{self.source} {self.step_id or self.pk} ({self.status})"

    @property
    def is_pending(self) -> bool:
        return self.status == ApprovalStatus.PENDING
