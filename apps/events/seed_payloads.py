"""The ``data`` of hub messages in the seeds' own shapes (docs/realtime.md).

One internal event can be delivered under a seed 004 name and a seed 002 name whose payloads
differ (``agent_status`` carries status strings, ``agent:status_changed`` ``AgentStatus``
objects). ``shape`` builds each from the event; ``prepare`` first attaches, once per event, what
the run events need from their execution (the query, priority, result, timings), read from the
database off the event loop.
"""

from __future__ import annotations

from collections import OrderedDict

from channels.db import database_sync_to_async

#: names whose payload needs the execution row
_RUN_NAMES = frozenset(
    {
        "inference_started",
        "inference_completed",
        "inference_failed",
        "agent:execution_started",
        "agent:execution_completed",
    }
)
_CACHE: OrderedDict = OrderedDict()
_CACHE_SIZE = 512
#: seed 002 AgentStatus.state for each agent status
_STATE = {"executing": "executing", "error": "error", "disabled": "disabled"}
#: registered by apps.runs (``register_execution_summary``)
_execution_summary = None


async def prepare(event: dict, names: list[str]) -> dict:
    """The event with ``_execution`` (a summary of its run) when a run name is delivered."""
    execution_id = event.get("execution_id")
    if not execution_id or not _RUN_NAMES.intersection(names):
        return event
    key = (execution_id, event.get("seq"))
    summary = _CACHE.get(key)
    if summary is None:
        summary = await database_sync_to_async(execution_summary)(execution_id)
        _CACHE[key] = summary
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return {**event, "_execution": summary}


def register_execution_summary(summary) -> None:
    """``summary(execution_id) -> dict`` (empty for an unknown run): the runs app registers it in its
    ``AppConfig.ready`` (runs sits above events, docs/architecture.md)."""
    global _execution_summary
    _execution_summary = summary


def execution_summary(execution_id) -> dict:
    """What the seed run events need from their execution; empty while no runs app registered."""
    return _execution_summary(execution_id) if _execution_summary else {}


def _agent_status(status: str | None, data: dict) -> dict:
    """Seed 002 ``AgentStatus`` for a status string."""
    return {
        "state": _STATE.get(status or "", "idle"),
        "last_error": data.get("last_error"),
        "health_score": 0.0 if status == "error" else 1.0,
        "resource_usage": {
            "cpu_usage": None,
            "memory_usage": None,
            "api_calls_per_minute": None,
            "network_usage": None,
        },
    }


def shape(name: str, data: dict, event: dict) -> dict:
    """Add the seed's fields for ``name`` to ``data`` (what is already there stays)."""
    run = event.get("_execution") or {}
    if name == "agent:status_changed":
        return {
            **data,
            "old_status": _agent_status(data.get("old_status"), data),
            "new_status": _agent_status(data.get("new_status"), data),
        }
    if name == "inference_started":
        return {**data, **{k: run.get(k) for k in ("query", "estimated_duration", "priority")}}
    if name in ("inference_completed", "inference_failed"):
        extra = {"processing_time": run.get("processing_time"), "result_summary": run.get("result_summary")}
        if name == "inference_failed":
            extra = {
                "processing_time": run.get("processing_time"),
                "error_code": data.get("status"),
                "error_message": (run.get("result") or {}).get("error") or data.get("reason"),
            }
        return {**data, **extra}
    if name == "agent:execution_started":
        return {**data, "command": run.get("command")}
    if name == "agent:execution_completed":
        return {**data, "result": run.get("result"), "duration": run.get("duration")}
    if name == "system:health_changed":
        return {
            **data,
            "old_health": data.get("old_health") or {"status": data.get("old_status")},
            "new_health": data.get("new_health") or {"status": data.get("new_status")},
        }
    return data
