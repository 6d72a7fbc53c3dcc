"""Reads of the console's run page (``/dashboard/run/<id>``): the run's header, its spans as a
nested waterfall (offsets and durations in ms from the run's start), its log lines each placed
beside the span it was written in, status changes, approvals and child runs. Secrets in span
attributes and log data are redacted (secret-looking keys, and credentials inside strings)."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from apps.approvals.models import Approval
from apps.audit.services import redact
from apps.console.selectors import run_row
from apps.console.selectors_graphs import workflow_run_graph
from apps.console.sources import TERMINAL, workflow_model
from apps.runs.models import Execution, ExecutionEvent, ExecutionLog, TraceSpan
from kai_platform.logging import scrub

MAX_SPANS = 2000
MAX_LOGS = 1000


def clean(value):
    """``value`` with secret-looking keys replaced and credentials in strings scrubbed."""

    def scrub_all(item):
        if isinstance(item, dict):
            return {k: scrub_all(v) for k, v in item.items()}
        if isinstance(item, list):
            return [scrub_all(v) for v in item]
        return scrub(item) if isinstance(item, str) else item

    return scrub_all(redact(value))


def scoped_execution(*, organization, execution_id):
    """The run if it is in scope (``organization=None``: any), else None."""
    rows = Execution.objects.select_related("organization", "agent", "created_by")
    if organization is not None:
        rows = rows.filter(organization=organization)
    return rows.filter(pk=execution_id).first()


def _ms(when, origin) -> float | None:
    return None if when is None else round((when - origin).total_seconds() * 1000, 3)


def run_header(execution) -> dict:
    user = execution.created_by
    return {
        **run_row(execution),
        "who": getattr(user, "email", "") if user else "",
        "model": execution.model,
        "trace_id": execution.trace_id,
        "tokens_in": execution.tokens_in,
        "tokens_out": execution.tokens_out,
        "attempts": execution.attempts,
        "max_attempts": execution.max_attempts,
        "cancel_requested": execution.cancel_requested,
        "parent_id": str(execution.parent_id or "") or None,
        "crew_id": str(execution.crew_id) if execution.crew_id else None,
        "error": execution.error or "",
        "cost_decimal": execution.cost,
        "terminal": execution.status in TERMINAL,
        "can_cancel": execution.status not in TERMINAL,
        "can_retry": execution.status in TERMINAL and execution.kind != "workflow_step",
    }


def _span_rows(execution, origin) -> list[dict]:
    spans = list(TraceSpan.objects.filter(execution=execution).order_by("started_at", "id")[:MAX_SPANS])
    nodes = {}
    for span in spans:
        nodes[span.span_id] = {
            "span_id": span.span_id,
            "parent_span_id": span.parent_span_id or None,
            "kind": span.kind,
            "name": span.name,
            "status": span.status,
            "model": span.model,
            "start_ms": _ms(span.started_at, origin),
            "duration_ms": span.duration_ms,
            "end_ms": _ms(span.ended_at, origin),
            "tokens_in": span.tokens_in,
            "tokens_out": span.tokens_out,
            "cost": str(span.cost),
            "attributes": clean(span.attributes or {}),
            "children": [],
        }
    roots: list[dict] = []
    for node in nodes.values():
        parent = nodes.get(node["parent_span_id"] or "")
        (parent["children"] if parent else roots).append(node)
    ordered: list[dict] = []

    def walk(node, depth):
        children = node.pop("children")
        ordered.append({**node, "depth": depth})
        for child in children:
            walk(child, depth + 1)

    for root in roots:
        walk(root, 0)
    return ordered


def _place_log(log: dict, spans: list[dict]) -> str | None:
    """The span a log line belongs to: the tool span it reports on, else the innermost span open
    when it was written."""
    at = log["at_ms"]
    tool = (log["data"] or {}).get("tool")
    if tool:
        done = [
            s
            for s in spans
            if s["kind"] == "tool" and s["name"] == tool and s["end_ms"] is not None and s["end_ms"] <= at + 50
        ]
        if done:
            return max(done, key=lambda s: s["end_ms"])["span_id"]
    open_ = [
        s
        for s in spans
        if s["start_ms"] is not None and s["start_ms"] <= at and (s["end_ms"] is None or at <= s["end_ms"])
    ]
    return max(open_, key=lambda s: (s["depth"], s["start_ms"]))["span_id"] if open_ else None


def _log_rows(execution, origin, spans) -> list[dict]:
    logs = ExecutionLog.objects.filter(execution=execution).order_by("-seq")[:MAX_LOGS]
    rows = [
        {
            "seq": log.seq,
            "level": log.level,
            "message": clean(log.message),
            "data": clean(log.data or {}),
            "at_ms": _ms(log.created_at, origin),
        }
        for log in reversed(list(logs))
    ]
    for row in rows:
        row["span_id"] = _place_log(row, spans)
    return rows


def _events(execution, origin) -> list[dict]:
    return [
        {"from": e.from_status, "to": e.to_status, "reason": e.reason, "at_ms": _ms(e.at, origin)}
        for e in ExecutionEvent.objects.filter(execution=execution).order_by("id")[:500]
    ]


def _approvals(execution, origin) -> list[dict]:
    rows = Approval.objects.filter(organization_id=execution.organization_id, execution=execution).order_by(
        "created_at"
    )
    return [
        {
            "id": str(a.pk),
            "question": a.question,
            "status": a.status,
            "step_id": a.step_id,
            "at_ms": _ms(a.created_at, origin),
            "resolved_ms": _ms(a.resolved_at, origin),
        }
        for a in rows[:100]
    ]


def _children(execution, origin) -> list[dict]:
    rows = (
        Execution.objects.filter(parent=execution)
        .order_by("created_at")
        .values("id", "run_name", "kind", "status", "tokens_in", "tokens_out", "cost", "started_at", "completed_at")[
            :500
        ]
    )
    return [
        {
            **row,
            "id": str(row["id"]),
            "cost": str(row["cost"]),
            "cost_decimal": row["cost"],
            "start_ms": _ms(row["started_at"], origin),
            "end_ms": _ms(row["completed_at"], origin),
        }
        for row in rows
    ]


def run_trace(*, execution) -> dict:
    """Everything the run page draws (the caller checked the run is in scope)."""
    origin = execution.started_at or execution.created_at
    spans = _span_rows(execution, origin)
    if spans:
        origin_shift = min(0.0, min(s["start_ms"] for s in spans))
        if origin_shift < 0:  # a resumed run's spans may start before its latest start
            origin = origin + timedelta(milliseconds=origin_shift)
            spans = _span_rows(execution, origin)
    children = _children(execution, origin)
    header = run_header(execution)
    if children:  # a workflow's model use is its steps'
        header["steps_tokens"] = sum(c["tokens_in"] + c["tokens_out"] for c in children)
        header["steps_cost"] = str(sum((c["cost_decimal"] for c in children), header["cost_decimal"]))
    for row in [header, *children]:
        row.pop("cost_decimal", None)
    end = execution.completed_at or timezone.now()
    ends = [s["end_ms"] for s in spans if s["end_ms"] is not None]
    total = max([_ms(end, origin) or 0.0, *ends]) or 1.0
    return {
        "run": header,
        "origin": origin.isoformat(),
        "total_ms": round(total, 3),
        "spans": spans,
        "logs": _log_rows(execution, origin, spans),
        "events": _events(execution, origin),
        "approvals": _approvals(execution, origin),
        "children": children,
        "workflow": workflow_run_graph(execution=execution) if workflow_model("WorkflowRun") else None,
        "generated_at": timezone.now().isoformat(),
    }
