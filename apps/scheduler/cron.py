"""Cron arithmetic in a schedule's time zone, DST-correct.

A tick is a local wall-clock time the 5-field expression names, turned into one instant:

- a local time that does not exist (spring forward, e.g. 02:30 in Europe/Berlin on the last Sunday
  of March) fires at the first local time after the gap (03:00), like Vixie cron; several skipped
  times fold into that one tick;
- a local time that exists twice (fall back) fires once, at its first occurrence.

Everything here is pure (``now`` is always passed in), so it is tested without clocks.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from celery.schedules import crontab
from croniter import croniter

CRON_FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")


def cron_error(expression: object) -> str | None:
    """Why ``expression`` is not a usable 5-field cron expression (None when it is)."""
    if not isinstance(expression, str) or not expression.strip():
        return "Must be a 5-field cron expression (minute hour day-of-month month day-of-week)."
    parts = expression.split()
    if len(parts) != 5:
        return f"Must have 5 fields (minute hour day-of-month month day-of-week); got {len(parts)}."
    if not croniter.is_valid(expression):
        return f"{expression!r} is not a valid cron expression."

    try:  # beat must be able to run it too (it has no L/W/# extensions)
        crontab(**dict(zip(CRON_FIELDS, parts)))
    except Exception as exc:  # celery raises ValueError / ParseException subclasses
        return f"{expression!r} is not supported by the scheduler: {exc}"
    return None


def timezone_error(name: str) -> str | None:
    if not isinstance(name, str) or not name:
        return "Must be an IANA time zone name, e.g. Europe/Berlin."
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return f"{name!r} is not an IANA time zone name (e.g. Europe/Berlin, UTC)."
    return None


def crontab_fields(expression: str) -> dict:
    return dict(zip(CRON_FIELDS, expression.split()))


def _localize(naive: datetime, tz: ZoneInfo) -> datetime:
    """A local wall-clock time → an aware instant (first occurrence; after a gap: its end)."""
    for minutes in range(0, 24 * 60 + 1):
        candidate = naive + timedelta(minutes=minutes)
        aware = candidate.replace(tzinfo=tz, fold=0)
        if aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == candidate:
            return aware
    raise ValueError(f"no valid local time near {naive} in {tz}")  # pragma: no cover


def _local_naive(moment: datetime, tz: ZoneInfo) -> datetime:
    return moment.astimezone(tz).replace(tzinfo=None)


# ``_localize`` never decreases as the local time grows (a gap folds into its end, a repeated hour
# takes its first occurrence), so a tick whose local time is at or before ``now``'s local time is
# never after ``now``, and one after it can only be at or before ``now`` inside a repeated hour.
# Both searches start at ``now``'s local time: a few cron steps, never a day of them.


def next_ticks(expression: str, tz_name: str, *, now: datetime, count: int) -> list[datetime]:
    """The next ``count`` ticks strictly after ``now``, as aware datetimes in the schedule's zone."""
    tz = ZoneInfo(tz_name)
    iterator = croniter(expression, _local_naive(now, tz) - timedelta(minutes=1))
    out: list[datetime] = []
    guard = 0
    while len(out) < count and guard < count * 10 + 2000:
        guard += 1
        tick = _localize(iterator.get_next(datetime), tz)
        if tick <= now or (out and tick <= out[-1]):
            continue
        out.append(tick)
    return out


def latest_tick(expression: str, tz_name: str, *, now: datetime) -> datetime | None:
    """The latest tick at or before ``now`` (aware, in the schedule's zone): the latest tick whose
    local time is at or before ``now``'s, then — in a repeated hour — the later ones that still
    fall at or before ``now``."""
    tz = ZoneInfo(tz_name)
    start = _local_naive(now, tz).replace(second=0, microsecond=0) + timedelta(minutes=1)
    try:
        naive = croniter(expression, start).get_prev(datetime)
    except Exception:  # croniter gives up on expressions with no tick in its search window
        return None
    forward = croniter(expression, naive)
    for _ in range(5000):
        following = forward.get_next(datetime)
        if _localize(following, tz) > now:
            break
        naive = following
    return _localize(naive, tz)


def tick_key(tick: datetime) -> str:
    """The tick as a UTC ISO string (the stable part of a run's dedupe key)."""
    return tick.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
