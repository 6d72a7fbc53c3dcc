"""Reads of the run engine that other apps use through registration (quotas)."""

from __future__ import annotations

from apps.runs.models import Execution


def executions_created_since(*, organization_id, where, since) -> list[tuple]:
    """``(pk, created_at)`` of the organization's runs matching ``where`` created after ``since``."""
    return list(
        Execution.objects.for_org(organization_id).filter(where, created_at__gt=since).values_list("pk", "created_at")
    )


_SUMMARY_FIELDS = (
    "kind",
    "status",
    "definition",
    "inputs",
    "run_name",
    "priority",
    "result",
    "error",
    "started_at",
    "completed_at",
    "tokens_in",
    "tokens_out",
    "cost",
    "agent__average_execution_time",
)


def execution_summary(execution_id) -> dict:
    """The run fields the seed 002/004 run events carry (query, priority, result, timings); registered
    with apps.events.seed_payloads in ``AppConfig.ready``."""
    run = Execution.objects.select_related("agent").filter(pk=execution_id).only(*_SUMMARY_FIELDS).first()
    if run is None:
        return {}
    definition, inputs = run.definition or {}, run.inputs or {}
    seconds = (run.completed_at - run.started_at).total_seconds() if run.completed_at and run.started_at else None
    result = run.result if isinstance(run.result, dict) else {}
    output = result.get("output") if isinstance(result.get("output"), str) else None
    average = run.agent.average_execution_time if run.agent else None
    return {
        "query": _query_of(run, definition, inputs)[:2000],
        "priority": _priority_name(run.priority),
        "estimated_duration": round(average, 3) if average else None,
        "processing_time": round(seconds, 3) if seconds is not None else None,
        "result_summary": {
            "output": (output or "")[:500],
            "tokens": run.tokens_in + run.tokens_out,
            "cost": str(run.cost),
        },
        "command": {
            "action": definition.get("action") or definition.get("command") or run.kind,
            "parameters": definition.get("parameters") or definition.get("params") or inputs,
            "context": definition.get("context") or {},
            "priority": _priority_name(run.priority),
            "voice_input": bool(definition.get("voice_input")),
        },
        "result": result if "success" in result else _seed_result(run, result, seconds),
        "duration": round(seconds * 1000) if seconds is not None else None,
    }


def _query_of(run, definition: dict, inputs: dict) -> str:
    """What the run was asked: its prompt, description or command, else its inputs' task or its name."""
    candidates = (
        definition.get("prompt"),
        definition.get("description"),
        definition.get("command"),
        inputs.get("task"),
        inputs.get("input"),
        inputs.get("query"),
        run.run_name,
    )
    return next((v for v in candidates if isinstance(v, str) and v), "")


def _priority_name(priority: int) -> str:
    return "high" if priority >= 7 else "low" if priority <= 3 else "normal"


def _seed_result(run, result: dict, seconds: float | None) -> dict:
    """Seed 002's AgentResponse of a run whose result is not one already."""
    return {
        "success": run.status == "COMPLETED",
        "data": result or None,
        "error": run.error or None,
        "metadata": {"execution_time": round(seconds * 1000) if seconds is not None else 0},
    }
