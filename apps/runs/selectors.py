"""Reads of the run engine that other apps use through registration (quotas)."""

from __future__ import annotations

from apps.runs.models import Execution


def executions_created_since(*, organization_id, where, since) -> list[tuple]:
    """``(pk, created_at)`` of the organization's runs matching ``where`` created after ``since``."""
    return list(
        Execution.objects.for_org(organization_id).filter(where, created_at__gt=since).values_list("pk", "created_at")
    )


def execution_summary(execution_id) -> dict:
    """The run fields the seed 002/004 run events carry (query, priority, result, timings); registered
    with apps.events.seed_payloads in ``AppConfig.ready``."""
    run = (
        Execution.objects.select_related("agent")
        .filter(pk=execution_id)
        .only(
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
        .first()
    )
    if run is None:
        return {}
    definition, inputs = run.definition or {}, run.inputs or {}
    query = next(
        (
            v
            for v in (
                definition.get("prompt"),
                definition.get("description"),
                definition.get("command"),
                inputs.get("task"),
                inputs.get("input"),
                inputs.get("query"),
                run.run_name,
            )
            if isinstance(v, str) and v
        ),
        "",
    )
    seconds = (run.completed_at - run.started_at).total_seconds() if run.completed_at and run.started_at else None
    result = run.result if isinstance(run.result, dict) else {}
    output = result.get("output") if isinstance(result.get("output"), str) else None
    return {
        "query": query[:2000],
        "priority": "high" if run.priority >= 7 else "low" if run.priority <= 3 else "normal",
        "estimated_duration": round(run.agent.average_execution_time, 3)
        if run.agent and run.agent.average_execution_time
        else None,
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
            "priority": "high" if run.priority >= 7 else "low" if run.priority <= 3 else "normal",
            "voice_input": bool(definition.get("voice_input")),
        },
        "result": result
        if "success" in result
        else {
            "success": run.status == "COMPLETED",
            "data": result or None,
            "error": run.error or None,
            "metadata": {"execution_time": round(seconds * 1000) if seconds is not None else 0},
        },
        "duration": round(seconds * 1000) if seconds is not None else None,
    }
