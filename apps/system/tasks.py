"""Beat tasks of apps.system: roll finished minutes up into ``MetricRollup`` rows, and publish
``metrics_update`` / ``system_status`` / ``performance_alert`` hub events to active organizations."""

from __future__ import annotations

import datetime
import logging
import time

from celery import shared_task
from django.apps import apps as django_apps
from django.conf import settings
from django.db.models import Count, Sum
from django.db.models.fields.json import KeyTextTransform
from django.utils import timezone

from apps.accounts.models import Organization
from apps.events.services import publish
from apps.system import selectors
from apps.system.models import MetricRollup
from kai_platform import observability
from kai_platform.api import sharedcache
from kai_platform.api.metrics import queue_depths, worker_heartbeats

logger = logging.getLogger(__name__)

#: minutes recomputed on every run (idempotent upserts), so a late or skipped tick loses nothing
ROLLUP_LOOKBACK_MINUTES = 5

#: metric name → (how buckets combine in GET metrics, description)
METRICS = {
    "api_requests": ("sum", "API requests of the organization."),
    "api_errors": ("sum", "API requests answered 5xx."),
    "api_client_errors": ("sum", "API requests answered 4xx."),
    "api_latency_p50_ms": ("avg", "Median API latency (ms)."),
    "api_latency_p95_ms": ("max", "95th percentile API latency (ms)."),
    "api_latency_p99_ms": ("max", "99th percentile API latency (ms)."),
    "runs_started": ("sum", "Executions created."),
    "runs_completed": ("sum", "Executions that completed."),
    "runs_failed": ("sum", "Executions that failed."),
    "runs_cancelled": ("sum", "Executions cancelled."),
    "llm_tokens_in": ("sum", "LLM input tokens, by provider and model."),
    "llm_tokens_out": ("sum", "LLM output tokens, by provider and model."),
    "llm_cost_usd": ("sum", "LLM cost in USD, by provider and model."),
    "queue_depth": ("max", "Messages waiting per Celery queue (platform-wide)."),
    "workers_alive": ("min", "Celery workers with a fresh heartbeat (platform-wide)."),
}


def _label_key(labels: dict) -> str:
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))[:200]


def _row(org_id, name: str, bucket, value, labels: dict | None = None) -> MetricRollup:
    labels = labels or {}
    return MetricRollup(
        organization_id=org_id,
        name=name,
        bucket=bucket,
        labels=labels,
        label_key=_label_key(labels),
        value=float(value or 0),
    )


def rollup_minute(minute: int) -> list[MetricRollup]:
    """The rows of one finished minute (epoch seconds, aligned), from Redis and the database."""
    bucket = datetime.datetime.fromtimestamp(minute, tz=datetime.UTC)
    end = bucket + datetime.timedelta(minutes=1)
    rows: list[MetricRollup] = []
    observability.flush()  # this process's buffered samples first
    try:
        members = sharedcache.redis().smembers(f"{settings.KAI_REDIS_PREFIX}:perf:active:{minute}")
    except Exception:
        members = set()
    for raw in members:
        org_id = raw.decode() if isinstance(raw, bytes) else raw
        stats = observability.minute_stats(org_id, minute)
        rows += [
            _row(org_id, "api_requests", bucket, stats["requests"]),
            _row(org_id, "api_errors", bucket, stats["errors"]),
            _row(org_id, "api_client_errors", bucket, stats["client_errors"]),
        ]
        for q in (50, 95, 99):
            value = observability.percentile(stats["latencies"], q)
            if value is not None:
                rows.append(_row(org_id, f"api_latency_p{q}_ms", bucket, value))
    if django_apps.is_installed("apps.runs"):
        Execution = django_apps.get_model("runs", "Execution")
        for row in (
            Execution.objects.filter(created_at__gte=bucket, created_at__lt=end)
            .values("organization_id")
            .annotate(n=Count("id"))
            .order_by()
        ):
            rows.append(_row(row["organization_id"], "runs_started", bucket, row["n"]))
        names = {"COMPLETED": "runs_completed", "FAILED": "runs_failed", "CANCELLED": "runs_cancelled"}
        for row in (
            Execution.objects.filter(completed_at__gte=bucket, completed_at__lt=end, status__in=list(names))
            .values("organization_id", "status")
            .annotate(n=Count("id"))
            .order_by()
        ):
            rows.append(_row(row["organization_id"], names[row["status"]], bucket, row["n"]))
        TraceSpan = django_apps.get_model("runs", "TraceSpan")
        spans = (
            TraceSpan.objects.filter(kind="llm", ended_at__gte=bucket, ended_at__lt=end)
            .annotate(provider=KeyTextTransform("provider", "attributes"))
            .values("organization_id", "provider", "model")
            .annotate(tin=Sum("tokens_in"), tout=Sum("tokens_out"), usd=Sum("cost"))
            .order_by()
        )
        for span in spans:
            labels = {"provider": span["provider"] or "unknown", "model": span["model"] or "unknown"}
            rows += [
                _row(span["organization_id"], "llm_tokens_in", bucket, span["tin"], labels),
                _row(span["organization_id"], "llm_tokens_out", bucket, span["tout"], labels),
                _row(span["organization_id"], "llm_cost_usd", bucket, span["usd"], labels),
            ]
    return rows


def _save(rows: list[MetricRollup]) -> int:
    org_ids = {str(r.organization_id) for r in rows if r.organization_id}
    if org_ids:  # Redis may still name an organization deleted since
        alive = {str(pk) for pk in Organization.objects.filter(pk__in=org_ids).values_list("pk", flat=True)}
        rows = [r for r in rows if r.organization_id is None or str(r.organization_id) in alive]
    if rows:
        MetricRollup.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["organization", "name", "bucket", "label_key"],
            update_fields=["value", "labels"],
            batch_size=1000,
        )
    return len(rows)


@shared_task(name="apps.system.tasks.rollup_metrics", ignore_result=True)
def rollup_metrics(lookback_minutes: int = ROLLUP_LOOKBACK_MINUTES) -> dict:
    """Beat, every minute: (re)compute the last few finished minutes; sample platform gauges
    (queue depth, live workers) into the last finished minute; drop rows past retention."""
    current = observability.minute_of(time.time())
    written = 0
    for i in range(1, lookback_minutes + 1):
        written += _save(rollup_minute(current - 60 * i))
    last = datetime.datetime.fromtimestamp(current - 60, tz=datetime.UTC)
    platform: list[MetricRollup] = []
    try:
        platform += [
            _row(None, "queue_depth", last, depth, {"queue": queue}) for queue, depth in queue_depths().items()
        ]
        platform.append(_row(None, "workers_alive", last, len(worker_heartbeats())))
    except Exception:
        logger.warning("metrics rollup: Redis unavailable for platform gauges", exc_info=True)
    written += _save(platform)
    cutoff = timezone.now() - datetime.timedelta(days=settings.KAI_METRIC_RETENTION_DAYS)
    old = list(MetricRollup.objects.filter(bucket__lt=cutoff).values_list("id", flat=True)[:20000])
    deleted = MetricRollup.objects.filter(id__in=old).delete()[0] if old else 0
    return {"written": written, "deleted": deleted}


# --- hub events --------------------------------------------------------------------------------


def _active_organizations(minutes: int) -> set[str]:
    active = observability.active_organizations(minutes)
    if django_apps.is_installed("apps.runs"):
        Execution = django_apps.get_model("runs", "Execution")
        since = timezone.now() - datetime.timedelta(minutes=minutes)
        running = (
            Execution.objects.filter(status__in=["PENDING", "PREPARING", "RUNNING"])
            .values_list("organization_id", flat=True)
            .distinct()
        )
        finished = (
            Execution.objects.filter(completed_at__gte=since).values_list("organization_id", flat=True).distinct()
        )
        active |= {str(o) for o in running} | {str(o) for o in finished}
    return active


def _api_alerts(requests: dict, add) -> None:
    """Slow responses and a high error rate, once the window holds enough requests to tell."""
    p95 = requests["latency_ms"]["p95"]
    if requests["requests"] >= settings.KAI_ALERT_MIN_REQUESTS:
        if p95 is not None and p95 >= settings.KAI_ALERT_P95_MS:
            add(
                "slow_response",
                p95,
                settings.KAI_ALERT_P95_MS,
                metric="api_latency_p95_ms",
                requests=requests["requests"],
            )
        if requests["error_rate"] >= settings.KAI_ALERT_ERROR_RATE:
            add(
                "high_error_rate",
                requests["error_rate"],
                settings.KAI_ALERT_ERROR_RATE,
                metric="api_error_rate",
                requests=requests["requests"],
            )


def evaluate_alerts(perf: dict) -> list[dict]:
    """``performance_alert`` payloads (docs/observability.md) for the thresholds ``perf`` crosses."""
    alerts = []

    def add(alert_type, value, threshold, **details):
        severity = "critical" if value >= 2 * threshold else "warning"
        alerts.append(
            {
                "alert_type": alert_type,
                "severity": severity,
                "details": {"value": value, "threshold": threshold, **details},
            }
        )

    _api_alerts(perf["requests"], add)
    runs = perf["runs"]
    finished = runs["completed"] + runs["failed"] + runs["cancelled"]
    if finished >= settings.KAI_ALERT_MIN_RUNS and runs["failure_rate"] >= settings.KAI_ALERT_FAILED_RUN_RATE:
        add(
            "agent_error",
            runs["failure_rate"],
            settings.KAI_ALERT_FAILED_RUN_RATE,
            metric="run_failure_rate",
            failed=runs["failed"],
            finished=finished,
        )
    for queue, depth in perf["queues"].items():
        if depth >= settings.KAI_ALERT_QUEUE_DEPTH:
            add("queue_backlog", depth, settings.KAI_ALERT_QUEUE_DEPTH, queue=queue)
    resources = perf["resources"]
    if resources["cpu_usage"] >= settings.KAI_ALERT_CPU_PERCENT:
        add("high_cpu", resources["cpu_usage"], settings.KAI_ALERT_CPU_PERCENT)
    if resources["memory_usage"] >= settings.KAI_ALERT_MEMORY_PERCENT:
        add("high_memory", resources["memory_usage"], settings.KAI_ALERT_MEMORY_PERCENT)
    if perf["workers"]["available"] and perf["workers"]["count"] == 0 and (runs["pending"] or runs["running"]):
        alerts.append(
            {
                "alert_type": "no_workers",
                "severity": "critical",
                "details": {"pending_runs": runs["pending"], "running_runs": runs["running"]},
            }
        )
    return alerts


def health_status(perf: dict, alerts: list[dict]) -> str:
    if any(a["severity"] == "critical" for a in alerts):
        return "unhealthy"
    return "degraded" if alerts else "healthy"


def _publish_status_change(redis, organization, *, status: str, perf: dict, alerts: list) -> int:
    """``system.status`` when the organization's health differs from the one last published (the
    key lives 10 minutes, so an unchanged status is repeated that often); 1 when published."""
    status_key = f"{settings.KAI_REDIS_PREFIX}:system:status:{organization.pk}"
    previous = redis.get(status_key)
    previous = previous.decode() if previous else None
    if previous == status:
        return 0
    components = {
        "database": "healthy",
        "redis": "healthy",
        "workers": "healthy" if perf["workers"]["count"] else "unhealthy",
        "runs": "degraded" if alerts else "healthy",
    }
    publish(
        organization,
        "system.status",
        {
            "status": status,
            "previous_status": previous,
            "old_status": previous,
            "new_status": status,
            "reason": alerts[0]["alert_type"] if alerts else "recovered",
            "components": components,
            "old_health": {"status": previous} if previous else None,
            "new_health": {"status": status, "resources": perf["resources"], "components": components},
            "alerts": [a["alert_type"] for a in alerts],
            "workers": perf["workers"]["count"],
            "queues": perf["queues"],
            "resources": perf["resources"],
        },
        component="system",
        severity="info" if status == "healthy" else "warning",
    )
    redis.set(status_key, status, ex=600)
    return 1


@shared_task(name="apps.system.tasks.publish_system_status", ignore_result=True)
def publish_system_status() -> dict:
    """Beat: to every organization active in the status window, a ``metrics.update`` event
    (hub ``metrics_update``); ``system.status`` (``system_status``) when its health changed or
    every 10 minutes; ``system.performance_alert`` per crossed threshold, at most once per type
    and cooldown."""
    minutes = settings.KAI_STATUS_WINDOW_MINUTES
    redis = sharedcache.redis()
    prefix = settings.KAI_REDIS_PREFIX
    counts = {"organizations": 0, "alerts": 0, "status": 0}
    for organization in Organization.objects.filter(pk__in=list(_active_organizations(minutes))):
        perf = selectors.performance(organization=organization, minutes=minutes)
        alerts = evaluate_alerts(perf)
        status = health_status(perf, alerts)
        publish(
            organization,
            "metrics.update",
            {
                "window_minutes": minutes,
                "requests": perf["requests"],
                "runs": perf["runs"],
                "queues": perf["queues"],
                "workers": perf["workers"]["count"],
                "resources": perf["resources"],
                "status": status,
                **selectors.seed_metrics(organization=organization, perf=perf, minutes=minutes),
            },
            component="system",
        )
        counts["organizations"] += 1
        counts["status"] += _publish_status_change(redis, organization, status=status, perf=perf, alerts=alerts)
        for alert in alerts:
            if redis.set(
                f"{prefix}:system:alert:{organization.pk}:{alert['alert_type']}",
                1,
                nx=True,
                ex=settings.KAI_ALERT_COOLDOWN_SECONDS,
            ):
                publish(
                    organization,
                    "system.performance_alert",
                    alert,
                    component="system",
                    severity="critical" if alert["severity"] == "critical" else "warning",
                )
                counts["alerts"] += 1
    return counts
