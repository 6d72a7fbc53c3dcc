"""Reads of apps.system: the organization's architecture (``SystemArchitecture``, docs/observability.md, with a
Mermaid flowchart), performance over a window, metric time series, health resources."""

from __future__ import annotations

import datetime
import math
import re
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypedDict

import psutil
from django.apps import apps as django_apps
from django.conf import settings
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q
from django.utils import timezone

from apps.agents.models import Agent, Provider, Service
from apps.runs.models import Execution
from apps.system.models import Maintenance, MetricRollup, SystemAlert
from apps.system.services import workflow_model
from kai_platform.api.errors.exceptions import ServiceUnavailable
from kai_platform.api.metrics import queue_depths, worker_heartbeats
from kai_platform.observability import percentile, window_stats

# --- architecture ------------------------------------------------------------------------------

_AGENT_STATUS = {"active": "active", "executing": "active", "idle": "active", "error": "error"}
_MERMAID_ID = re.compile(r"[^A-Za-z0-9_]")


def mermaid_id(prefix: str, value) -> str:
    return f"{prefix}_{_MERMAID_ID.sub('', str(value).replace('-', ''))[:32]}"


def mermaid_label(text) -> str:
    """Label text safe inside ``["…"]``: quotes and brackets become Mermaid entity codes, no newlines."""
    text = " ".join(str(text).split())[:80]
    for char, code in (
        ('"', "#quot;"),
        ("<", "#lt;"),
        (">", "#gt;"),
        ("[", "#91;"),
        ("]", "#93;"),
        ("{", "#123;"),
        ("}", "#125;"),
        ("|", "#124;"),
        ("`", "#96;"),
    ):
        text = text.replace(char, code)
    return text or " "


def _grid(index: int, row: int) -> dict:
    return {"x": 120 + 220 * (index % 6), "y": 100 + 160 * row + 120 * (index // 6)}


def architecture(*, organization) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = []
    connections: list[dict[str, Any]] = []
    workflows: list[dict[str, Any]] = []
    agents = list(
        Agent.objects.for_org(organization)
        .order_by("agent_number")
        .only(
            "id",
            "agent_number",
            "name",
            "status",
            "role",
            "llm",
            "agent_type",
            "tools",
            "is_active",
            "last_heartbeat",
            "execution_count",
        )
    )
    by_id = {str(a.pk): a for a in agents}
    by_number = {a.agent_number: a for a in agents}
    for i, agent in enumerate(agents):
        nodes.append(
            {
                "id": str(agent.pk),
                "agent_number": agent.agent_number,
                "name": agent.name,
                "type": "agent",
                "status": _AGENT_STATUS.get(agent.status, "inactive") if agent.is_active else "inactive",
                "position": _grid(i, 0),
                "metadata": {
                    "role": agent.role,
                    "llm": agent.llm,
                    "agent_type": agent.agent_type,
                    "tools": agent.tools,
                    "agent_status": agent.status,
                    "execution_count": agent.execution_count,
                    "last_heartbeat": agent.last_heartbeat,
                },
            }
        )
    services = list(Service.objects.for_org(organization).exclude(service_type="agent").order_by("name")[:200])
    for i, service in enumerate(services):
        nodes.append(
            {
                "id": str(service.pk),
                "agent_number": None,
                "name": service.name,
                "type": "service",
                "status": {"online": "active", "healthy": "active"}.get(service.status, "inactive"),
                "position": _grid(i, 1),
                "metadata": {
                    "service_type": service.service_type,
                    "capabilities": service.capabilities,
                    "service_status": service.status,
                },
            }
        )
    providers = list(Provider.objects.for_org(organization).order_by("name"))
    provider_by_model: dict[str, Provider] = {}
    for i, provider in enumerate(providers):
        nodes.append(
            {
                "id": str(provider.pk),
                "agent_number": None,
                "name": provider.name,
                "type": "external_api",
                "status": "active" if provider.is_active else "inactive",
                "position": _grid(i, 2),
                "metadata": {"provider_type": provider.provider_type, "default_model": provider.default_model},
            }
        )
        if provider.default_model:
            provider_by_model.setdefault(provider.default_model, provider)
    for agent in agents:
        provider = provider_by_model.get(agent.llm)
        if provider is not None:
            connections.append(
                {
                    "id": f"{agent.pk}:{provider.pk}",
                    "source": str(agent.pk),
                    "target": str(provider.pk),
                    "type": "dependency",
                    "status": "active" if provider.is_active else "inactive",
                    "metadata": {},
                }
            )

    Orchestration = django_apps.get_model("crews", "Orchestration")
    for orchestration in Orchestration.objects.for_org(organization).order_by("name")[:200]:
        members = [str(a) for a in orchestration.agent_ids if str(a) in by_id]
        workflows.append(
            {
                "id": str(orchestration.pk),
                "name": orchestration.name,
                "kind": "orchestration",
                "pattern": orchestration.pattern,
                "status": orchestration.status,
                "agents": members,
                "steps": [],
            }
        )
        if orchestration.pattern in ("sequential",):
            pairs = list(zip(members, members[1:]))
            kind = "data_flow"
        else:  # a lead (supervisor/router/first agent) triggers the others
            pairs = [(members[0], m) for m in members[1:]] if members else []
            kind = "trigger"
        for source, target in pairs:
            connections.append(
                {
                    "id": f"{orchestration.pk}:{source}:{target}",
                    "source": source,
                    "target": target,
                    "type": kind,
                    "status": "active" if orchestration.status == "active" else "inactive",
                    "metadata": {"orchestration_id": str(orchestration.pk)},
                }
            )
    Crew = django_apps.get_model("crews", "Crew")
    for crew in Crew.objects.for_org(organization).order_by("name").only("id", "name", "process")[:200]:
        workflows.append(
            {
                "id": str(crew.pk),
                "name": crew.name,
                "kind": "crew",
                "pattern": crew.process,
                "status": "active",
                "agents": [],
                "steps": [],
            }
        )
    workflows += _workflow_definitions(organization, by_id, by_number, connections)
    architecture: dict[str, Any] = {"agents": nodes, "connections": connections, "workflows": workflows}
    architecture["mermaid_diagram"] = mermaid_diagram(architecture)
    return architecture


class _WorkflowStep(TypedDict):
    id: str
    action: str
    agent_id: str | None
    depends_on: list[str]


def _workflow_definitions(organization, by_id, by_number, connections) -> list[dict]:
    """DAG workflows of apps.workflows, when that app has a ``Workflow`` model with a JSON
    ``definition`` of ``steps`` (docs/workflows.md: id, agent_number|agent_id, action, depends_on)."""
    model = workflow_model()
    if model is None:
        return []
    out = []
    fields = {f.name for f in model._meta.concrete_fields}
    for workflow in model.objects.for_org(organization).order_by("-created_at")[:100]:
        definition = getattr(workflow, "definition", None) if "definition" in fields else None
        steps_raw = (definition or {}).get("steps") if isinstance(definition, dict) else None
        steps: list[_WorkflowStep] = []
        for raw in steps_raw if isinstance(steps_raw, list) else []:
            if not isinstance(raw, dict) or not raw.get("id"):
                continue
            agent = by_id.get(str(raw.get("agent_id") or "")) or by_number.get(raw.get("agent_number"))
            depends = [str(d) for d in raw.get("depends_on") or [] if isinstance(d, (str, int))]
            steps.append(
                {
                    "id": str(raw["id"]),
                    "action": str(raw.get("action") or ""),
                    "agent_id": str(agent.pk) if agent else None,
                    "depends_on": depends,
                }
            )
        for step in steps:
            for dep in step["depends_on"]:
                source = next((s["agent_id"] for s in steps if s["id"] == dep), None)
                if source and step["agent_id"]:
                    connections.append(
                        {
                            "id": f"{workflow.pk}:{dep}:{step['id']}",
                            "source": source,
                            "target": step["agent_id"],
                            "type": "trigger",
                            "status": "active",
                            "metadata": {"workflow_id": str(workflow.pk), "step_id": step["id"]},
                        }
                    )
        out.append(
            {
                "id": str(workflow.pk),
                "name": getattr(workflow, "name", str(workflow.pk)),
                "kind": "workflow",
                "pattern": "dag",
                "status": str(getattr(workflow, "status", "") or "active"),
                "agents": sorted({s["agent_id"] for s in steps if s["agent_id"]}),
                "steps": steps,
            }
        )
    return out


_SHAPES = {"agent": ('["', '"]'), "service": ('(["', '"])'), "external_api": ('[("', '")]')}
_ARROWS = {"data_flow": "-->", "trigger": "==>", "dependency": "-.->"}


def mermaid_diagram(arch: dict) -> str:
    """A Mermaid ``flowchart LR``: agents, services and providers as nodes (shape by type, class
    by status), connections as edges, each workflow's steps in a subgraph."""
    lines = ["flowchart LR"]
    ids = {}
    groups = {"agent": "Agents", "service": "Services", "external_api": "External APIs"}
    for kind, title in groups.items():
        members = [n for n in arch["agents"] if n["type"] == kind]
        if not members:
            continue
        lines.append(f'  subgraph {kind}_group["{title}"]')
        for node in members:
            node_id = ids[node["id"]] = mermaid_id(kind[0], node["id"])
            label = f"#{node['agent_number']} {node['name']}" if node.get("agent_number") else node["name"]
            start, end = _SHAPES[kind]
            lines.append(f"    {node_id}{start}{mermaid_label(label)}{end}:::{node['status']}")
        lines.append("  end")
    for workflow in arch["workflows"]:
        if not workflow["steps"]:
            continue
        wid = mermaid_id("w", workflow["id"])
        lines.append(f'  subgraph {wid}["{mermaid_label(workflow["kind"] + ": " + workflow["name"])}"]')
        for step in workflow["steps"]:
            lines.append(
                f'    {wid}_{mermaid_id("s", step["id"])}(["{mermaid_label(step["id"] + " " + step["action"])}"])'
            )
        lines.append("  end")
        for step in workflow["steps"]:
            sid = f"{wid}_{mermaid_id('s', step['id'])}"
            for dep in step["depends_on"]:
                if any(s["id"] == dep for s in workflow["steps"]):
                    lines.append(f"  {wid}_{mermaid_id('s', dep)} --> {sid}")
            if step["agent_id"] in ids:
                lines.append(f"  {sid} -.-> {ids[step['agent_id']]}")
    for connection in arch["connections"]:
        source, target = ids.get(connection["source"]), ids.get(connection["target"])
        if source and target and not connection["metadata"].get("workflow_id"):
            lines.append(f"  {source} {_ARROWS.get(connection['type'], '-->')}|{connection['type']}| {target}")
    lines += [
        "  classDef active fill:#d1fae5,stroke:#059669",
        "  classDef inactive fill:#f3f4f6,stroke:#9ca3af",
        "  classDef error fill:#fee2e2,stroke:#dc2626",
    ]
    return "\n".join(lines) + "\n"


# --- performance -------------------------------------------------------------------------------


def run_stats(*, organization, since) -> dict:
    Execution = django_apps.get_model("runs", "Execution")
    rows = Execution.objects.for_org(organization)
    finished = rows.filter(completed_at__gte=since) if _has_field(Execution, "completed_at") else rows.none()
    counts = finished.aggregate(
        completed=Count("id", filter=Q(status="COMPLETED")),
        failed=Count("id", filter=Q(status="FAILED")),
        cancelled=Count("id", filter=Q(status="CANCELLED")),
    )
    durations = _run_durations(finished.filter(status="COMPLETED"))
    total = sum(counts.values())
    return {
        "started": rows.filter(created_at__gte=since).count(),
        **counts,
        "running": rows.filter(status="RUNNING").count(),
        "pending": rows.filter(status__in=["PENDING", "PREPARING"]).count(),
        "failure_rate": round(counts["failed"] / total, 4) if total else 0.0,
        "duration_ms": durations,
    }


def _has_field(model, name: str) -> bool:
    return any(f.name == name for f in model._meta.concrete_fields)


def _run_durations(queryset) -> dict:
    start = "started_at" if _has_field(queryset.model, "started_at") else "created_at"
    values = (
        queryset.exclude(**{f"{start}__isnull": True})
        .annotate(d=ExpressionWrapper(F("completed_at") - F(start), output_field=DurationField()))
        .order_by("-completed_at")
        .values_list("d", flat=True)[:2000]
    )
    millis = [d.total_seconds() * 1000 for d in values if d is not None]
    return {
        "p50": percentile(millis, 50),
        "p95": percentile(millis, 95),
        "samples": len(millis),
        "avg": round(sum(millis) / len(millis), 2) if millis else None,
    }


def workers() -> dict:
    try:
        beats = worker_heartbeats()
    except Exception:
        return {"count": 0, "workers": [], "available": False}
    return {
        "count": len(beats),
        "available": True,
        "workers": [{"name": name, "heartbeat_age_s": age} for name, age in sorted(beats.items())],
    }


def queues() -> dict:
    try:
        return queue_depths()
    except Exception:
        return {}


def performance(*, organization, minutes: int) -> dict:
    since = timezone.now() - datetime.timedelta(minutes=minutes)
    return {
        "window_minutes": minutes,
        "requests": window_stats(str(organization.pk), minutes),
        "runs": run_stats(organization=organization, since=since),
        "queues": queues(),
        "workers": workers(),
        "resources": resources(),
        "generated_at": timezone.now(),
    }


def resources() -> dict:
    """This host's resources (``SystemHealth.resources``, docs/observability.md), in percent."""
    try:
        disk = psutil.disk_usage(str(settings.BASE_DIR)).percent
    except Exception:
        disk = None
    return {
        "cpu_usage": psutil.cpu_percent(interval=None),
        "memory_usage": psutil.virtual_memory().percent,
        "disk_usage": disk,
        "load_average": [round(x, 2) for x in psutil.getloadavg()],
    }


# --- metric time series ------------------------------------------------------------------------

#: period → (span, bucket width) of GET metrics
PERIODS = {
    "15m": (datetime.timedelta(minutes=15), 60),
    "1h": (datetime.timedelta(hours=1), 60),
    "6h": (datetime.timedelta(hours=6), 300),
    "24h": (datetime.timedelta(hours=24), 900),
    "7d": (datetime.timedelta(days=7), 3600),
    "30d": (datetime.timedelta(days=30), 6 * 3600),
}


def metric_series(*, organization, name: str, period: str, aggregation: str) -> dict:
    """Points of ``name`` over ``period``, one per bucket and label set; counts are summed per
    bucket, gauges (``aggregation="avg"``/``max``) averaged or maxed."""
    span, width = PERIODS[period]
    now = timezone.now()
    since = now - span
    rows = (
        MetricRollup.objects.for_org(organization)
        .filter(name=name, bucket__gte=since)
        .order_by("bucket")
        .values_list("bucket", "label_key", "labels", "value")
    )
    series: dict[str, dict] = {}
    for bucket, label_key, labels, value in rows:
        entry = series.setdefault(label_key, {"labels": labels, "points": {}})
        start = int(bucket.timestamp()) // width * width
        entry["points"].setdefault(start, []).append(value)
    combine = _COMBINE[aggregation]
    out = []
    for entry in series.values():
        points: list[_Point] = [
            {"timestamp": datetime.datetime.fromtimestamp(ts, tz=datetime.UTC), "value": _round(combine(values))}
            for ts, values in sorted(entry["points"].items())
        ]
        out.append(
            {
                "labels": entry["labels"],
                "points": points,
                "total": _round(sum(p["value"] for p in points)) if aggregation == "sum" else None,
            }
        )
    return {
        "metric_name": name,
        "period": period,
        "interval_seconds": width,
        "aggregation": aggregation,
        "start": since,
        "end": now,
        "series": out,
    }


class _Point(TypedDict):
    timestamp: datetime.datetime
    value: float


#: how one bucket's values become its point, by ``aggregation``
_COMBINE: dict[str, Callable[[list[float]], float]] = {
    "sum": sum,
    "max": max,
    "min": min,
    "avg": lambda v: sum(v) / len(v),
}


def _round(value: float) -> float:
    return value if math.isnan(value) else round(value, 6)


def run_counts_by_status(*, organization) -> dict:
    Execution = django_apps.get_model("runs", "Execution")
    return {
        row["status"]: row["n"]
        for row in Execution.objects.for_org(organization).values("status").annotate(n=Count("id")).order_by()
    }


# --- maintenance mode and operator alerts ---------------------------------------------------------


class MaintenanceState:
    """Whether maintenance is on now (``until`` past ends it), its message, and the ``Retry-After``."""

    def __init__(self, row=None):
        now = timezone.now()
        self.enabled = bool(row and row.enabled)
        self.message = row.message if row else ""
        self.until = row.until if row else None
        self.started_at = row.started_at if row else None
        self.active = self.enabled and (self.until is None or self.until > now)
        self.retry_after = max(1, math.ceil((self.until - now).total_seconds())) if self.active and self.until else 60


def maintenance_state() -> MaintenanceState:
    return MaintenanceState(Maintenance.objects.filter(scope="platform").first())


#: when this process last read maintenance as off (monotonic); only "off" is reused, never "on"
_maintenance_off_at = [float("-inf")]


def maintenance_cache_seconds() -> float:
    """How long a process reuses a read that found maintenance off (new runs skip that read); a
    change saved in this process forgets it (``forget_maintenance``), another process's is seen
    within this long. 0 turns the reuse off."""
    return float(getattr(settings, "KAI_MAINTENANCE_CACHE_SECONDS", 1.0))


def forget_maintenance(**_) -> None:
    _maintenance_off_at[0] = float("-inf")


class MaintenanceOn(ServiceUnavailable):
    """The 503 of a new run while maintenance is on; the handler sends ``retry_after`` as ``Retry-After``."""

    def __init__(self, detail: str, *, retry_after: int, extra: dict) -> None:
        super().__init__(detail, extra=extra)
        self.retry_after = retry_after


def ensure_no_maintenance() -> None:
    """Raise 503 ``GENERAL_004`` with ``Retry-After`` while maintenance is on (new runs call this)."""
    if time.monotonic() - _maintenance_off_at[0] < maintenance_cache_seconds():
        return
    state = maintenance_state()
    if not state.active:
        _maintenance_off_at[0] = time.monotonic()
    else:
        raise MaintenanceOn(
            f"The platform is under maintenance{': ' + state.message if state.message else ''}; new runs are "
            f"refused until it ends.",
            retry_after=state.retry_after,
            extra={"maintenance": True, "until": state.until.isoformat() if state.until else None},
        )


def recent_alerts(*, limit: int = 50):
    return list(SystemAlert.objects.select_related("created_by").order_by("-created_at")[:limit])


def seed_metrics(*, organization, perf: dict, minutes: int) -> dict:
    """Seed 004 ``metrics_update`` layout: ``system{cpu_usage, memory_usage, active_agents,
    queue_length}`` and ``agents{id: {status, inference_rate, avg_response_time, success_rate,
    current_load}}`` (runs per minute and success over the window; load = running runs)."""

    since = timezone.now() - timedelta(minutes=minutes)
    runs = {
        row["agent_id"]: row
        for row in Execution.objects.for_org(organization)
        .filter(agent__isnull=False, created_at__gte=since)
        .values("agent_id")
        .annotate(
            total=Count("id"),
            done=Count("id", filter=Q(status="COMPLETED")),
            failed=Count("id", filter=Q(status__in=["FAILED", "CANCELLED"])),
            running=Count("id", filter=Q(status="RUNNING")),
        )
    }
    agents = {}
    for agent_id, status, average in Agent.objects.for_org(organization).values_list(
        "id", "status", "average_execution_time"
    )[:500]:
        row = runs.get(agent_id) or {"total": 0, "done": 0, "failed": 0, "running": 0}
        finished = row["done"] + row["failed"]
        agents[str(agent_id)] = {
            "status": status,
            "inference_rate": round(row["total"] / max(minutes, 1), 3),
            "avg_response_time": round(average or 0.0, 3),
            "success_rate": round(row["done"] / finished, 3) if finished else 1.0,
            "current_load": row["running"],
        }
    resources = perf.get("resources") or {}
    return {
        "system": {
            "cpu_usage": resources.get("cpu_usage"),
            "memory_usage": resources.get("memory_usage"),
            "active_agents": sum(1 for a in agents.values() if a["status"] == "executing"),
            "queue_length": sum(v for v in (perf.get("queues") or {}).values() if isinstance(v, int)),
        },
        "agents": agents,
    }
