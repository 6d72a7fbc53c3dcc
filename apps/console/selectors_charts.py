"""Reads of the dashboard's charts (``GET /dashboard/charts``): time series over a window, fed from
the metric minute rollups (``apps.system`` ``MetricRollup``), with the last few minutes — which the
rollup beat still recomputes — read live from runs and spans so a run shows the moment it ends.

``organization=None`` is the whole platform (staff): series are then summed over organizations, and
tokens and cost are split by organization.
"""

from __future__ import annotations

import datetime
import re
from collections import Counter, defaultdict

from django.core.cache import cache
from django.db.models import Aggregate, Count, DateTimeField, FloatField, Sum
from django.db.models.expressions import RawSQL
from django.db.models.functions import TruncMinute
from django.utils import timezone

from apps.accounts.models import Organization
from apps.console.selectors import health
from apps.console.sources import TERMINAL, metric_model
from apps.runs.models import Execution, TraceSpan

#: window → (span in seconds, bucket width in seconds); the widths of ``GET /api/v1/metrics``
WINDOWS = {"1h": (3600, 60), "24h": (86400, 900), "7d": (7 * 86400, 3600)}
DEFAULT_WINDOW = "1h"
#: the newest minutes are read from runs and spans, not from the rollup (the beat recomputes them)
LIVE_TAIL_SECONDS = 300
#: organizations drawn on their own in the staff token/cost charts; the rest are summed as "other"
TOP_ORGANIZATIONS = 6
FAILURE_SAMPLE = 5000

RUN_METRICS = {
    "runs_started": "started",
    "runs_completed": "completed",
    "runs_failed": "failed",
    "runs_cancelled": "cancelled",
}
STATUS_METRIC = {"COMPLETED": "completed", "FAILED": "failed", "CANCELLED": "cancelled"}
USAGE_METRICS = ("llm_tokens_in", "llm_tokens_out", "llm_cost_usd")
#: seconds the settled rollup sums of a scope and window are kept (the tail moves every minute)
SETTLED_CACHE_SECONDS = 90


class Percentile(Aggregate):
    """PostgreSQL ``percentile_cont(p) WITHIN GROUP (ORDER BY expr)``."""

    function = "percentile_cont"
    template = "%(function)s(%(p)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()


class Grid:
    """The window's buckets: aligned start times (epoch seconds), oldest first."""

    def __init__(self, window: str, now: datetime.datetime):
        self.window = window
        self.span, self.width = WINDOWS[window]
        now_s = int(now.timestamp())
        last = now_s // self.width * self.width
        self.times = list(range(last - self.span + self.width, last + self.width, self.width))
        self.since = _dt(self.times[0])
        self.tail = _dt(now_s // 60 * 60 - LIVE_TAIL_SECONDS)  # minutes from here on are read live

    def index(self, when) -> int | None:
        seconds = int(when.timestamp()) if isinstance(when, datetime.datetime) else int(when)
        i = (seconds - self.times[0]) // self.width
        return i if 0 <= i < len(self.times) else None

    def zeros(self) -> list:
        return [0] * len(self.times)


def _dt(seconds: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)


def _scoped(queryset, organization):
    return queryset if organization is None else queryset.filter(organization=organization)


def _slot(column: str, width: int) -> RawSQL:
    """The start of the bucket of ``column`` (a timestamp), computed by PostgreSQL (``date_bin``)."""
    return RawSQL(
        f"date_bin(make_interval(secs => %s), {column}, TIMESTAMPTZ '1970-01-01 00:00:00+00')",
        [width],
        output_field=DateTimeField(),
    )


def _rollups(organization, grid: Grid, names, *, before=None):
    """(organization id, metric name, bucket start, summed value) rows, summed per bucket in SQL."""
    rows = metric_model().objects.filter(name__in=list(names), bucket__gte=grid.since)
    if before is not None:
        rows = rows.filter(bucket__lt=before)
    rows = rows.exclude(organization__isnull=True) if organization is None else rows.filter(organization=organization)
    return (
        rows.annotate(slot=_slot("bucket", grid.width))
        .values("organization_id", "name", "slot")
        .annotate(total=Sum("value"))
        .order_by()
        .values_list("organization_id", "name", "slot", "total")
    )


def settled_rollups(*, organization, grid: Grid) -> list[tuple]:
    """Every chart's rollup part — the minutes before the live tail, which no longer change — summed
    per bucket in one query, as (organization id, name, bucket start, value). Cached until the tail
    moves on or a rollup row is added, so a page polling every 15 s reads the rollups once a minute."""
    latest = metric_model().objects.order_by("-id").values_list("id", flat=True).first() or 0
    key = (
        f"console:charts:{organization.pk if organization is not None else 'all'}:{grid.window}:"
        f"{int(grid.tail.timestamp())}:{latest}"
    )
    try:
        rows = cache.get(key)
    except Exception:  # Redis down: read the database
        rows = None
    if rows is None:
        rows = [
            (str(org), name, int(slot.timestamp()), value)
            for org, name, slot, value in _rollups(organization, grid, (*RUN_METRICS, *USAGE_METRICS), before=grid.tail)
        ]
        try:
            cache.set(key, rows, SETTLED_CACHE_SECONDS)
        except Exception:
            pass
    return rows


def run_series(*, organization, grid: Grid, settled: list[tuple]) -> dict:
    """Runs started / completed / failed / cancelled per bucket."""
    series = {name: grid.zeros() for name in RUN_METRICS.values()}
    for _org, name, bucket, value in settled:
        i = grid.index(bucket)
        if i is not None and name in RUN_METRICS:
            series[RUN_METRICS[name]][i] += int(value)
    live = _scoped(Execution.objects.all(), organization)
    for row in (
        live.filter(created_at__gte=max(grid.tail, grid.since))
        .annotate(minute=TruncMinute("created_at"))
        .values("minute")
        .annotate(n=Count("id"))
        .order_by()
    ):
        i = grid.index(row["minute"])
        if i is not None:
            series["started"][i] += row["n"]
    for row in (
        live.filter(completed_at__gte=max(grid.tail, grid.since), status__in=TERMINAL)
        .annotate(minute=TruncMinute("completed_at"))
        .values("minute", "status")
        .annotate(n=Count("id"))
        .order_by()
    ):
        i = grid.index(row["minute"])
        if i is not None:
            series[STATUS_METRIC[row["status"]]][i] += row["n"]
    return series


def duration_series(*, organization, grid: Grid) -> dict:
    """p50 and p95 duration (ms) of the runs that completed in each bucket (None: no run)."""
    rows = (
        _scoped(Execution.objects.all(), organization)
        .filter(status="COMPLETED", completed_at__gte=grid.since, started_at__isnull=False)
        .annotate(
            slot=_slot("completed_at", grid.width),
            ms=RawSQL("EXTRACT(EPOCH FROM (completed_at - started_at)) * 1000", []),
        )
        .values("slot")
        .annotate(p50=Percentile("ms", p=0.5), p95=Percentile("ms", p=0.95), n=Count("id"))
        .order_by()
    )
    p50, p95, samples = [None] * len(grid.times), [None] * len(grid.times), grid.zeros()
    for row in rows:
        i = grid.index(row["slot"])
        if i is not None:
            p50[i], p95[i], samples[i] = round(row["p50"], 2), round(row["p95"], 2), row["n"]
    return {"p50": p50, "p95": p95, "samples": samples}


def usage_series(*, organization, grid: Grid, settled: list[tuple]) -> dict:
    """LLM tokens (in + out) and cost (USD) per bucket and organization."""
    tokens: dict = defaultdict(grid.zeros)
    cost: dict = defaultdict(grid.zeros)
    for org, name, bucket, value in settled:
        i = grid.index(bucket)
        if i is not None and name in USAGE_METRICS:
            target = cost if name == "llm_cost_usd" else tokens
            target[str(org)][i] += value
    spans = (
        _scoped(TraceSpan.objects.all(), organization)
        .filter(kind="llm", ended_at__gte=max(grid.tail, grid.since))
        .annotate(minute=TruncMinute("ended_at"))
        .values("organization_id", "minute")
        .annotate(t=Sum("tokens_in") + Sum("tokens_out"), usd=Sum("cost"))
        .order_by()
    )
    for row in spans:
        i = grid.index(row["minute"])
        if i is not None:
            tokens[str(row["organization_id"])][i] += row["t"] or 0
            cost[str(row["organization_id"])][i] += float(row["usd"] or 0)
    return _by_organization(tokens, cost, len(grid.times))


def _by_organization(tokens: dict, cost: dict, width: int) -> dict:
    ids = set(tokens) | set(cost)
    ranked = sorted(ids, key=lambda o: (-sum(cost.get(o) or [0]), -sum(tokens.get(o) or [0]), o))
    shown, rest = ranked[:TOP_ORGANIZATIONS], ranked[TOP_ORGANIZATIONS:]
    slugs = {str(pk): slug for pk, slug in Organization.objects.filter(pk__in=shown).values_list("pk", "slug")}
    out: dict[str, list[dict]] = {"tokens": [], "cost": []}
    for key, source in (("tokens", tokens), ("cost", cost)):
        for org in shown:
            values = source.get(org) or [0] * width
            out[key].append(
                {"organization_id": org, "organization": slugs.get(org, org[:8]), "values": [_num(v) for v in values]}
            )
        if rest:
            summed = [sum((source.get(o) or [0] * width)[i] for o in rest) for i in range(width)]
            out[key].append(
                {"organization_id": None, "organization": f"{len(rest)} other", "values": [_num(v) for v in summed]}
            )
    return out


def _num(value: float):
    return int(value) if float(value).is_integer() else round(value, 6)


def platform_series(*, grid: Grid) -> dict:
    """Queue depth (all queues, the largest sample of the bucket) and live workers (the fewest),
    from the platform's rollup rows; the newest bucket also takes the value sampled now."""
    depth: list = [None] * len(grid.times)
    alive: list = [None] * len(grid.times)
    per_minute: dict = defaultdict(float)
    rows = (
        metric_model()
        .objects.filter(organization__isnull=True, bucket__gte=grid.since, name__in=["queue_depth", "workers_alive"])
        .values("name", "bucket")
        .annotate(total=Sum("value"))
        .order_by()
        .values_list("name", "bucket", "total")
    )
    for name, bucket, value in rows:
        i = grid.index(bucket)
        if i is None:
            continue
        if name == "queue_depth":
            per_minute[bucket] += value
        else:
            alive[i] = int(value) if alive[i] is None else min(alive[i], int(value))
    for bucket, value in per_minute.items():
        i = grid.index(bucket)
        if i is None:  # never: only buckets on the grid were summed
            continue
        depth[i] = int(value) if depth[i] is None else max(depth[i], int(value))
    now = health()
    if not now["redis_error"]:
        depth[-1] = max(depth[-1] or 0, sum(q["depth"] for q in now["queues"]))
        alive[-1] = now["workers_healthy"]
    return {"queue_depth": depth, "workers": alive, "redis_error": now["redis_error"]}


_CLASSES = [
    (re.compile(r"^internal error: ([A-Za-z_][\w.]*)"), None),
    (re.compile(r"failed \(([a-z_]+)\)"), "llm_{}"),
    (re.compile(r"\b(agent|tool|provider|model) .*\bis (disabled|inactive)\b", re.I), "{}_disabled"),
    (re.compile(r"budget", re.I), "budget_exceeded"),
    (re.compile(r"circuit", re.I), "circuit_open"),
    (re.compile(r"timed? ?out|timeout|deadline", re.I), "timeout"),
    (re.compile(r"lost|heartbeat|worker", re.I), "worker_lost"),
    (re.compile(r"approval", re.I), "approval"),
    (re.compile(r"\btool\b", re.I), "tool_error"),
    (re.compile(r"^([A-Z][A-Za-z]+(?:Error|Exception))\b"), None),
]


def error_class(error: str) -> str:
    """A short class name for a run's error text (its exception, LLM error kind, or cause)."""
    text = (error or "").strip()
    for pattern, template in _CLASSES:
        match = pattern.search(text)
        if match:
            return template.format(*match.groups()) if template else match.group(1)
    return "other" if text else "unknown"


def failure_classes(*, organization, grid: Grid) -> list[dict]:
    """Failed runs of the window grouped by error class, most frequent first."""
    rows = (
        _scoped(Execution.objects.all(), organization)
        .filter(status="FAILED", completed_at__gte=grid.since)
        .order_by("-completed_at")
        .values_list("id", "error", "completed_at")[:FAILURE_SAMPLE]
    )
    counts: Counter = Counter()
    latest: dict = {}
    for pk, error, completed_at in rows:
        name = error_class(error)
        counts[name] += 1
        latest.setdefault(
            name, {"run_id": str(pk), "example": (error or "")[:200], "last_at": completed_at.isoformat()}
        )
    return [{"error_class": name, "count": n, **latest[name]} for name, n in counts.most_common(12)]


def charts(*, organization=None, window: str = DEFAULT_WINDOW) -> dict:
    if window not in WINDOWS:
        raise ValueError(f"window must be one of {', '.join(WINDOWS)}")
    now = timezone.now()
    grid = Grid(window, now)
    settled = settled_rollups(organization=organization, grid=grid)
    runs = run_series(organization=organization, grid=grid, settled=settled)
    usage = usage_series(organization=organization, grid=grid, settled=settled)
    return {
        "window": window,
        "bucket_seconds": grid.width,
        "generated_at": now.isoformat(),
        "organization_id": str(organization.pk) if organization is not None else None,
        "times": grid.times,
        "runs": runs,
        "duration_ms": duration_series(organization=organization, grid=grid),
        "usage": usage,
        "platform": platform_series(grid=grid),
        "failures": failure_classes(organization=organization, grid=grid),
        "totals": {
            **{k: sum(v) for k, v in runs.items()},
            "tokens": sum(sum(s["values"]) for s in usage["tokens"]),
            "cost": round(sum(sum(s["values"]) for s in usage["cost"]), 6),
        },
    }
