"""Reads of the live dashboard. ``organization=None`` means the whole platform (staff)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Count, Sum
from django.utils import timezone
from django_redis import get_redis_connection
from kombu.transport.redis import Channel

from apps.accounts.models import Membership
from apps.approvals.selectors import pending_approvals as approvals_pending
from apps.runs.models import ACTIVE_STATUSES, TERMINAL_STATUSES, Execution, ExecutionStatus, UsageRollup
from apps.system.selectors import maintenance_state
from apps.system.services import maintenance_payload
from kai_platform.api.metrics import queue_names
from kai_platform.celery import worker_key_pattern
from kai_platform.realtime import limits
from kai_platform.supervisor import processes
from kai_platform.tenancy.roles import Role

RECENT_RUNS = 25
RECENT_FAILURES = 10


def _scoped(queryset, organization):
    return queryset if organization is None else queryset.for_org(organization)


def run_row(execution: Execution) -> dict:
    """One row of the runs table (the page renders these; the socket handler fetches them)."""
    return {
        "id": str(execution.pk),
        "run_name": execution.run_name,
        "kind": execution.kind,
        "status": execution.status,
        "organization_id": str(execution.organization_id),
        "organization": execution.organization.slug,
        "agent": execution.agent.name if execution.agent_id and execution.agent else "",
        "worker": execution.worker,
        "created_at": execution.created_at.isoformat() if execution.created_at else None,
        "started_at": execution.started_at.isoformat() if execution.started_at else None,
        "completed_at": execution.completed_at.isoformat() if execution.completed_at else None,
        "duration_ms": execution.duration_ms,
        "tokens": execution.tokens_in + execution.tokens_out,
        "cost": str(execution.cost),
        "error": (execution.error or "")[:300],
    }


def _run_queryset(organization):
    return (
        _scoped(Execution.objects.all(), organization)
        .select_related("organization", "agent")
        .only(
            "id",
            "run_name",
            "kind",
            "status",
            "organization_id",
            "organization__slug",
            "agent_id",
            "agent__name",
            "worker",
            "created_at",
            "started_at",
            "completed_at",
            "tokens_in",
            "tokens_out",
            "cost",
            "error",
        )
    )


def recent_runs(*, organization=None, limit: int = RECENT_RUNS) -> list[dict]:
    """Runs still going first, then the most recent ones, newest first."""
    active = list(
        _run_queryset(organization)
        .exclude(status__in=TERMINAL_STATUSES)  # waiting for approval too
        .order_by("-created_at")[:limit]
    )
    seen = {run.pk for run in active}
    recent = [run for run in _run_queryset(organization).order_by("-created_at")[:limit] if run.pk not in seen]
    return [run_row(run) for run in (active + recent)[: max(limit, len(active))]]


def run_detail(*, organization=None, execution_id) -> dict | None:
    run = _run_queryset(organization).filter(pk=execution_id).first()
    return run_row(run) if run is not None else None


def run_counts(*, organization=None) -> dict:
    counts = (
        _scoped(Execution.objects.all(), organization)
        .filter(status__in=[ExecutionStatus.PENDING, *ACTIVE_STATUSES])
        .values("status")
        .annotate(n=Count("id"))
        .order_by()
    )
    by_status = {row["status"]: row["n"] for row in counts}
    return {
        "pending": by_status.get(ExecutionStatus.PENDING, 0),
        "running": sum(by_status.get(s, 0) for s in ACTIVE_STATUSES),
    }


def failures_last_hour(*, organization=None, limit: int = RECENT_FAILURES) -> dict:
    since = timezone.now() - timedelta(hours=1)
    failed = _run_queryset(organization).filter(status=ExecutionStatus.FAILED, completed_at__gte=since)
    return {"count": failed.count(), "latest": [run_row(run) for run in failed.order_by("-completed_at")[:limit]]}


def cost_today(*, organization=None) -> list[dict]:
    """LLM usage today (UTC) per organization, most expensive first."""
    rows = (
        _scoped(UsageRollup.objects.all(), organization)
        .filter(day=timezone.now().date())
        .values("organization_id", "organization__slug", "organization__name")
        .annotate(
            cost=Sum("cost"),
            tokens_in=Sum("tokens_in"),
            tokens_out=Sum("tokens_out"),
            llm_calls=Sum("llm_calls"),
            executions=Sum("executions"),
        )
        .order_by("-cost", "organization__slug")
    )
    return [
        {
            "organization_id": str(row["organization_id"]),
            "organization": row["organization__slug"],
            "name": row["organization__name"],
            "cost": str(row["cost"] or Decimal(0)),
            "tokens": (row["tokens_in"] or 0) + (row["tokens_out"] or 0),
            "llm_calls": row["llm_calls"] or 0,
            "executions": row["executions"] or 0,
        }
        for row in rows
    ]


def _redis():
    return get_redis_connection("default")


def queue_depths() -> list[dict]:
    """Messages waiting per Celery queue, summed over the Redis transport's priority lists."""

    options: Mapping[str, Any] = settings.CELERY_BROKER_TRANSPORT_OPTIONS  # kombu's options, of mixed types
    keyprefix = options.get("global_keyprefix", "")
    steps = options.get("priority_steps", Channel.priority_steps)
    redis = _redis()
    pipe = redis.pipeline()
    names = queue_names()
    for name in names:
        for step in steps:
            pipe.llen(f"{keyprefix}{name}{Channel.sep}{step}" if step else f"{keyprefix}{name}")
    lengths = pipe.execute()
    depths, i = [], 0
    for name in names:
        depths.append({"queue": name, "depth": sum(lengths[i : i + len(steps)])})
        i += len(steps)
    return depths


def workers() -> list[dict]:
    """Celery workers with a fresh heartbeat (``kai_platform.celery``): name and seconds since it."""
    redis = _redis()
    pattern = worker_key_pattern()
    prefix = pattern[:-1]
    keys = sorted(redis.scan_iter(pattern, count=1000))
    if not keys:
        return []
    pipe = redis.pipeline()
    for key in keys:
        pipe.ttl(key)
    interval = settings.KAI_WORKER_HEARTBEAT_SECONDS
    found = []
    for key, ttl in zip(keys, pipe.execute()):
        age = max(0, interval * 3 - ttl) if ttl and ttl > 0 else None
        found.append(
            {
                "name": key.decode()[len(prefix) :],
                "last_seen_seconds": age,
                "healthy": age is not None and age <= interval * 2,
            }
        )
    return found


def health(*, organization=None) -> dict:
    """Queue depth and worker health. Queues and workers are shared by every organization; an
    owner sees them too (their runs wait in them), without other organizations' names."""
    try:
        depths, alive = queue_depths(), workers()
        error = ""
    except Exception as exc:  # Redis down: the page still renders and says so
        depths, alive, error = [], [], f"{type(exc).__name__}: {exc}"[:200]
    if organization is not None:
        alive = [{**w, "name": f"worker {i + 1}"} for i, w in enumerate(alive)]

    return {
        "queues": depths,
        "workers": alive,
        "workers_healthy": sum(1 for w in alive if w["healthy"]),
        "redis_error": error,
        "processes": processes(),
    }


def dashboard(*, organization=None) -> dict:
    return {
        "generated_at": timezone.now().isoformat(),
        "counts": run_counts(organization=organization),
        "runs": recent_runs(organization=organization),
        "failures": failures_last_hour(organization=organization),
        "cost_today": cost_today(organization=organization),
        "health": health(organization=organization),
        "approvals": pending_approvals(organization=organization),
        "maintenance": maintenance(),
        "sockets": open_sockets(organization=organization),
    }


def maintenance() -> dict:
    return maintenance_payload(maintenance_state())


def open_sockets(*, organization=None) -> dict:
    """Open sockets of every server process (Redis), with the client's fingerprint and version."""
    try:
        rows = limits.open_sockets(organization_id=organization.pk if organization is not None else None, limit=100)
    except Exception as exc:  # Redis down: the health panel says so too
        return {"count": 0, "items": [], "error": f"{type(exc).__name__}: {exc}"[:200]}
    return {"count": len(rows), "items": rows}


def pending_approvals(*, organization=None) -> dict:
    return approvals_pending(organization=organization, limit=RECENT_FAILURES)


def owned_organizations(user) -> list:
    """Organizations the user may watch as an owner (non-staff dashboard)."""
    return [
        m.organization
        for m in Membership.objects.select_related("organization")
        .filter(user=user, role=Role.OWNER, organization__is_active=True)
        .order_by("created_at")
    ]
