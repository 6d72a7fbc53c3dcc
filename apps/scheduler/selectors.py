"""Reads of the scheduler (constant query counts for lists)."""
from __future__ import annotations

from datetime import datetime

from apps.scheduler import cron
from apps.scheduler.models import Schedule


def schedules_for_list(*, queryset):
    return queryset.select_related("last_execution", "periodic_task").order_by("-created_at", "id")


def schedule_next_runs(*, schedule: Schedule, now: datetime, count: int) -> list[datetime]:
    return cron.next_ticks(schedule.cron_expression, schedule.timezone, now=now, count=count)
