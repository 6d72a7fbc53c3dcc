"""Celery tasks of the webhooks app (ids in, idempotent)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="apps.webhooks.tasks.deliver_webhook", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def deliver_webhook(delivery_id: str) -> str:
    """One attempt of a delivery; a failed one queues its own retry (exponential backoff)."""
    # deferred: cycle — apps.webhooks.services imports this module at load
    from apps.webhooks.services import delivery_attempt

    return delivery_attempt(delivery_id=delivery_id)


@shared_task(name="apps.webhooks.tasks.requeue_due_deliveries", ignore_result=True)
def requeue_due_deliveries() -> int:
    # deferred: cycle — apps.webhooks.services imports this module at load
    from apps.webhooks.services import deliveries_requeue_due

    return deliveries_requeue_due()
