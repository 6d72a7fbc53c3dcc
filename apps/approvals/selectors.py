"""Reads of the approvals app."""

from __future__ import annotations

from apps.approvals.models import Approval, ApprovalStatus


def approvals_for_list(*, queryset):
    return queryset.select_related("assignee_user", "resolved_by", "execution")


def pending_approvals(*, organization=None, limit: int = 20) -> dict:
    """Unanswered approvals, soonest deadline first (``organization=None``: the whole platform, for
    the staff dashboard) → ``{count, latest: [...]}``."""
    queryset = Approval.objects.all() if organization is None else Approval.objects.for_org(organization)
    queryset = queryset.filter(status=ApprovalStatus.PENDING)
    rows = queryset.select_related("organization", "execution").order_by("deadline", "created_at")[:limit]
    return {
        "count": queryset.count(),
        "latest": [
            {
                "id": str(a.pk),
                "question": a.question[:300],
                "source": a.source,
                "step_id": a.step_id,
                "organization": a.organization.slug,
                "execution_id": str(a.execution_id) if a.execution_id else None,
                "run_name": a.execution.run_name if a.execution_id and a.execution else "",
                "assignee_role": a.assignee_role,
                "deadline": a.deadline.isoformat() if a.deadline else None,
                "default_action": a.default_action,
                "created_at": a.created_at.isoformat(),
            }
            for a in rows
        ],
    }
