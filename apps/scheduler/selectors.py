"""Reads of the scheduler (constant query counts for lists)."""

from __future__ import annotations

from datetime import datetime

from apps.quotas.selectors import quota_refusals
from apps.runs.models import Execution
from apps.scheduler import cron
from apps.scheduler.models import Schedule


def schedules_for_list(*, queryset):
    return queryset.select_related("last_execution", "periodic_task").order_by("-created_at", "id")


def schedule_next_runs(*, schedule: Schedule, now: datetime, count: int) -> list[datetime]:
    return cron.next_ticks(schedule.cron_expression, schedule.timezone, now=now, count=count)


HISTORY_LIMIT = 100


def schedule_history(*, schedule: Schedule, limit: int = HISTORY_LIMIT) -> list[dict]:
    """The schedule's cron ticks, newest first: each run it fired (with the run's status) and each
    tick a plan quota refused (with the quota's numbers at the time)."""
    prefix = f"schedule:{schedule.pk}:"
    runs = (
        Execution.objects.for_org(schedule.organization_id)
        .filter(dedupe_key__startswith=prefix)
        .order_by("-created_at")
        .values("pk", "dedupe_key", "status", "created_at")[:limit]
    )
    items = [
        {
            "tick": run["dedupe_key"][len(prefix) :],
            "outcome": "fired",
            "at": run["created_at"],
            "execution_id": run["pk"],
            "status": run["status"],
            "quota": None,
            "message": "",
        }
        for run in runs
    ]
    refusals = quota_refusals(organization=schedule.organization_id, source="schedule", source_id=str(schedule.pk))
    for refusal in refusals[:limit]:
        items.append(
            {
                "tick": refusal.detail.get("tick"),
                "outcome": "quota_refused",
                "at": refusal.created_at,
                "execution_id": None,
                "status": None,
                "quota": {
                    "name": refusal.quota,
                    "limit": refusal.limit,
                    "used": refusal.used,
                    "window_seconds": refusal.window_seconds,
                    "reset_at": refusal.reset_at,
                },
                "message": refusal.detail.get("message", ""),
            }
        )
    items.sort(key=lambda item: item["at"], reverse=True)
    return items[:limit]
