"""Reads of the crews app (constant query counts for lists)."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q, Sum
from django.utils import timezone

from apps.agents.models import Agent
from apps.quotas.selectors import quota_status
from apps.runs.llm import month_start
from apps.runs.models import (
    ACTIVE_STATUSES,
    Execution,
    ExecutionEvent,
    ExecutionLog,
    ExecutionStatus,
    TraceSpan,
    UsageRollup,
)

PERIOD_DAYS = {"day": 1, "week": 7, "month": 30, "quarter": 90, "year": 365}


def executions_for_list(*, queryset):
    return queryset.order_by("-created_at", "id")


def execution_logs(*, execution: Execution, after: int = 0, limit: int = 200, level: str | None = None):
    queryset = ExecutionLog.objects.filter(execution=execution, seq__gt=after)
    if level:
        queryset = queryset.filter(level=level)
    return queryset.order_by("seq")[:limit]


def execution_events(*, execution: Execution):
    return ExecutionEvent.objects.filter(execution=execution).order_by("id")


def execution_spans(*, execution: Execution):
    return TraceSpan.objects.filter(execution=execution).order_by("started_at", "id")


def span_tree(spans) -> list[dict]:
    """Spans as a forest: each span dict gains ``children`` (roots first, in start order)."""
    nodes: dict[str, dict[str, Any]] = {}
    roots: list[dict[str, Any]] = []
    for span in spans:
        nodes[span["span_id"]] = {**span, "children": []}
    for node in nodes.values():
        parent = nodes.get(node["parent_span_id"])
        (parent["children"] if parent else roots).append(node)
    return roots


def span_counts(*, execution_ids) -> dict:
    rows = TraceSpan.objects.filter(execution_id__in=list(execution_ids)).values("execution_id").annotate(n=Count("id"))
    return {row["execution_id"]: row["n"] for row in rows}


def usage_period(period: str | None) -> tuple[str, int]:
    period = period if period in PERIOD_DAYS else "month"
    return period, PERIOD_DAYS[period]


def _usage_buckets(rows) -> tuple[dict, dict, dict]:
    """The rollup rows summed by agent, by day and by model."""
    by_agent: dict = defaultdict(
        lambda: {
            "executions": 0,
            "llm_calls": 0,
            "input_tokens": 0,
            "output_tokens": 0,
            "cost": Decimal(0),
            "agent_name": "",
        }
    )
    by_day: dict = defaultdict(
        lambda: {"executions": 0, "llm_calls": 0, "input_tokens": 0, "output_tokens": 0, "cost": Decimal(0)}
    )
    by_model: dict = defaultdict(lambda: {"llm_calls": 0, "input_tokens": 0, "output_tokens": 0, "cost": Decimal(0)})
    for row in rows.order_by("day"):
        for bucket in (by_agent[row.agent_id], by_day[row.day], by_model[row.model]):
            bucket["llm_calls"] += row.llm_calls
            bucket["input_tokens"] += row.tokens_in
            bucket["output_tokens"] += row.tokens_out
            bucket["cost"] += row.cost
        by_agent[row.agent_id]["executions"] += row.executions
        by_agent[row.agent_id]["agent_name"] = row.agent_name or by_agent[row.agent_id]["agent_name"]
        by_day[row.day]["executions"] += row.executions
    return by_agent, by_day, by_model


def usage_summary(*, organization, period: str | None = None, agent_id=None) -> dict:
    """Seed 003 ``usage``: totals, by agent, by day (and by model) over the period, from the rollup."""
    period, days = usage_period(period)
    since = timezone.now().date() - timedelta(days=days - 1)
    rows = UsageRollup.objects.for_org(organization).filter(day__gte=since)
    if agent_id is not None:
        rows = rows.filter(agent_id=agent_id)
    by_agent, by_day, by_model = _usage_buckets(rows)
    executions = Execution.objects.for_org(organization).filter(created_at__date__gte=since)
    if agent_id is not None:
        executions = executions.filter(Q(agent_id=agent_id) | Q(spans__agent_id=agent_id)).distinct()
    counts = executions.aggregate(
        total=Count("id", distinct=True),
        completed=Count("id", filter=Q(status=ExecutionStatus.COMPLETED), distinct=True),
        failed=Count("id", filter=Q(status=ExecutionStatus.FAILED), distinct=True),
    )
    input_tokens = sum(v["input_tokens"] for v in by_day.values())
    output_tokens = sum(v["output_tokens"] for v in by_day.values())
    total_cost = sum((v["cost"] for v in by_day.values()), Decimal(0))

    def with_tokens(bucket: dict) -> dict:
        return {**bucket, "tokens": bucket["input_tokens"] + bucket["output_tokens"], "cost_usd": bucket["cost"]}

    return {
        "period": period,
        "since": since,
        "until": timezone.now().date(),
        "total_executions": counts["total"],
        "completed_executions": counts["completed"],
        "failed_executions": counts["failed"],
        "total_cost_usd": total_cost,
        "total_tokens": input_tokens + output_tokens,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "llm_calls": sum(v["llm_calls"] for v in by_day.values()),
        "by_agent": [{"agent_id": key, **with_tokens(value)} for key, value in by_agent.items()],
        "by_day": [{"day": key, **with_tokens(value)} for key, value in sorted(by_day.items())],
        "by_model": [{"model": key, **with_tokens(value)} for key, value in sorted(by_model.items())],
        **({"quotas": quota_status(organization=organization)} if agent_id is None else {}),
    }


def runtime_status(*, organization) -> dict:
    counts = Execution.objects.for_org(organization).aggregate(
        running=Count("id", filter=Q(status__in=ACTIVE_STATUSES)),
        pending=Count("id", filter=Q(status=ExecutionStatus.PENDING)),
    )
    agents = Agent.objects.for_org(organization).aggregate(
        total=Count("id"), active=Count("id", filter=Q(is_active=True)), errored=Count("id", filter=Q(status="error"))
    )
    busy = set(
        Execution.objects.for_org(organization)
        .filter(status__in=ACTIVE_STATUSES, agent__isnull=False)
        .values_list("agent_id", flat=True)
    )
    return {"counts": counts, "agents": agents, "busy_agents": len(busy)}


def agent_month_costs(*, organization, agent_ids) -> dict:
    rows = (
        UsageRollup.objects.for_org(organization)
        .filter(agent_id__in=list(agent_ids), day__gte=month_start())
        .values("agent_id")
        .annotate(total=Sum("cost"))
    )
    return {row["agent_id"]: row["total"] or Decimal(0) for row in rows}
