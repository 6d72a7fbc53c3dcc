"""Reads of the approvals app."""
from __future__ import annotations

from apps.approvals.models import Approval, ApprovalStatus


def approvals_for_list(*, queryset):
    return queryset.select_related("assignee_user", "resolved_by", "execution")


def pending_approvals(*, organization, limit: int = 20):
    return list(Approval.objects.for_org(organization).filter(status=ApprovalStatus.PENDING)
                .select_related("execution").order_by("deadline", "created_at")[:limit])
