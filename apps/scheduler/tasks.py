"""The scheduler's Celery task: beat sends ``scheduler.fire(schedule_id)`` on every cron tick."""

from __future__ import annotations

from datetime import datetime

from celery import shared_task

from apps.scheduler.services import schedule_fire


@shared_task(name="scheduler.fire", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def fire(schedule_id: str, now: str | None = None) -> dict:
    """Create the run of the schedule's current tick, once (idempotent: a redelivery or a second
    beat finds the tick's run and does nothing). ``now`` (ISO 8601) is for replays and tests."""

    result = schedule_fire(schedule_id=schedule_id, now=datetime.fromisoformat(now) if now else None)
    return {"outcome": result.outcome, "execution_id": result.execution_id, "tick": result.tick}
