"""Celery tasks of the approvals app (ids in, idempotent)."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from apps.approvals.models import Approval, ApprovalStatus


@shared_task(name="apps.approvals.tasks.expire_approval", acks_late=True, ignore_result=True)
def expire_approval(approval_id: str) -> str:
    """Queued with ``eta=deadline``: apply the default if the approval is still pending then."""

    # deferred: cycle — apps.approvals.services imports this module at load
    from apps.approvals.services import approval_expire

    if approval_expire(approval_id=approval_id) is not None:
        return "expired"
    early = (
        Approval.objects.filter(pk=approval_id, status=ApprovalStatus.PENDING, deadline__gt=timezone.now())
        .values_list("deadline", flat=True)
        .first()
    )
    if early is not None:  # the timer fired before the deadline (clock skew between hosts): look again then
        expire_approval.apply_async(args=[approval_id], eta=early + timedelta(milliseconds=50))
        return "early"
    return "no-op"


@shared_task(name="apps.approvals.tasks.expire_due_approvals", ignore_result=True)
def expire_due_approvals() -> int:
    """Beat: the safety net for eta'd expiries lost with a broker or worker."""
    # deferred: cycle — apps.approvals.services imports this module at load
    from apps.approvals.services import approvals_expire_due

    return approvals_expire_due()
