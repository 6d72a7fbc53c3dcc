"""Celery tasks of the agents app (idempotent, ids/no arguments)."""

from celery import shared_task

from apps.agents.services import memory_purge_expired


@shared_task(name="agents.purge_expired_memory", acks_late=True)
def purge_expired_memory() -> int:
    """Delete expired agent memories in batches (reads never return them anyway)."""
    total = 0
    while True:
        deleted = memory_purge_expired()
        total += deleted
        if deleted == 0:
            return total
