"""How features plug into the run engine without the engine importing them.

Three registries, filled from the features' ``AppConfig.ready``:

- **run kinds**: ``register_runner(kind)`` — the function that runs an execution of that kind
  (``runner(ctx: RunContext) -> result``). crews registers ``crew`` and ``orchestration``, agents
  the one-agent kinds, workflows ``workflow``.
- **terminal hooks**: ``on_execution_terminal(*kinds)`` — called on commit after a run of one of
  those kinds ended, as ``hook(execution_id=, status=, kind=, organization_id=, agent_id=,
  parent_id=)``; quick (enqueue a task) and never raising into the engine.
  ``on_executions_terminal(*kinds)`` — the same for the runs a worker ended together, in one call
  ``hook([{execution_id: …, status: …, …}, …])`` (one read for all of them, not one each).
- **services**: ``provide(name)`` — the one implementation of something the engine needs from a
  feature (model resolution, tools, a parked run's approval, ...); ``SERVICES`` names them all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

Runner = Callable[..., object]

RUNNERS: dict[str, Runner] = {}
TERMINAL_HOOKS: dict[str, list[Callable]] = {}
TERMINAL_BATCH_HOOKS: dict[str, list[Callable]] = {}

#: what the engine asks of the features, and the contract of each
SERVICES = {
    "model_resolve": "(organization, model_name) -> apps.runs.llm.ResolvedModel; raises "
    "apps.runs.llm.ModelUnavailable when no provider serves the model",
    "tools_load": "(organization, names) -> enabled tool rows of those names (any order)",
    "tool_run": "(tool, arguments, *, organization, agent, actor, citations) -> the tool's output; "
    "sources it drew on are appended to ``citations`` (a list the run keeps in its result)",
    "provider_month_spend": "(provider) -> Decimal spent by the provider this month",
    "provider_record_usage": "(provider, input_tokens, output_tokens, cost, calls=1) -> None: ``calls`` "
    "calls of one provider, their tokens and cost summed",
    "provider_usage_statement": "([(provider, input_tokens, output_tokens, cost, calls), …]) -> (sql, params): "
    "``provider_record_usage`` of those providers as one statement, for the engine to send with its own",
    "agents_load": "(organization, ids) -> {str(id): agent} of the organization",
    "agent_record_run": "(agent, seconds, error, runs=1) -> None: the agent's run counters (``runs`` runs "
    "that took ``seconds`` in all)",
    "runs_admission": "() -> None: raises an API error (503 + Retry-After under maintenance) when "
    "new top-level runs are refused",
    "approval_park": "(execution, request, checkpoint) -> bool: ask the approval and park the run "
    "WAITING_FOR_APPROVAL (False when its cancel was requested meanwhile)",
}
_services: dict[str, Callable] = {}


def register_runner(kind: str):
    """Decorator: ``fn`` runs executions of ``kind`` (one runner per kind; the last one wins)."""

    def decorator(fn: Runner) -> Runner:
        RUNNERS[str(kind)] = fn
        return fn

    return decorator


def runner_for(kind: str) -> Runner | None:
    return RUNNERS.get(str(kind))


#: workflow step types other apps add (``definition.type`` → runner); agent steps have none
STEP_RUNNERS: dict[str, Runner] = {}


def register_step_runner(step_type: str):
    """Decorator: ``fn`` runs workflow steps of ``step_type`` (the knowledge app registers ``knowledge``)."""

    def decorator(fn: Runner) -> Runner:
        STEP_RUNNERS[step_type] = fn
        return fn

    return decorator


def step_runner_for(step_type) -> Runner | None:
    return STEP_RUNNERS.get(step_type)


def on_execution_terminal(*kinds):
    """Decorator: ``fn`` is called on commit after a run of one of ``kinds`` ended."""

    def decorator(fn):
        for kind in kinds:
            hooks = TERMINAL_HOOKS.setdefault(str(kind), [])
            if fn not in hooks:
                hooks.append(fn)
        return fn

    return decorator


def on_executions_terminal(*kinds):
    """Decorator: ``fn(ended)`` is called on commit with the runs of ``kinds`` that ended together
    (``ended``: a list of the keywords ``on_execution_terminal`` hooks get, one dict a run)."""

    def decorator(fn):
        for kind in kinds:
            hooks = TERMINAL_BATCH_HOOKS.setdefault(str(kind), [])
            if fn not in hooks:
                hooks.append(fn)
        return fn

    return decorator


def terminal_hooks(kind: str) -> list[Callable]:
    return TERMINAL_HOOKS.get(str(kind), [])


def run_terminal_hooks(ended: list[dict]) -> None:
    """Call the terminal hooks of the ended runs (dicts of the hooks' keywords): each one-run hook
    once a run, each batch hook once with the runs of its kinds. A hook's failure is logged."""
    batches: dict[Callable, list[dict]] = {}
    for item in ended:
        for hook in TERMINAL_HOOKS.get(str(item["kind"]), []):
            try:
                hook(**item)
            except Exception:
                logger.exception("terminal hook %s failed for execution %s", hook, item.get("execution_id"))
        for hook in TERMINAL_BATCH_HOOKS.get(str(item["kind"]), []):
            batches.setdefault(hook, []).append(item)
    for hook, items in batches.items():
        try:
            hook(items)
        except Exception:
            logger.exception("terminal hook %s failed for %d executions", hook, len(items))


def provide(name: str):
    """Decorator: ``fn`` is the implementation of the engine service ``name`` (see ``SERVICES``)."""
    if name not in SERVICES:
        raise ValueError(f"unknown run engine service {name!r}; known: {', '.join(SERVICES)}")

    def decorator(fn):
        _services[name] = fn
        return fn

    return decorator


def service(name: str) -> Callable:
    """The implementation of ``name``; a RuntimeError says which app should have provided it."""
    try:
        return _services[name]
    except KeyError:
        raise RuntimeError(
            f"no app provides the run engine service {name!r} ({SERVICES.get(name, '?')}); "
            "is the app that registers it installed?"
        ) from None


def has_service(name: str) -> bool:
    return name in _services
