"""How the run engine runs crews and orchestrations: registered with ``apps.runs.registry`` for the
``crew`` and ``orchestration`` kinds (imported by ``CrewsConfig.ready``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

from django.db import connection

from apps.agents.models import Agent
from apps.crews import specs
from apps.crews.crew_run import CrewRun, CrewSettings, TaskOutcome
from apps.crews.models import Pattern
from apps.runs.models import ExecutionKind, SpanKind
from apps.runs.recorder import Span
from apps.runs.registry import register_runner
from apps.runs.runner import (
    AgentProfile,
    AwaitingApproval,
    Cancelled,
    RunContext,
    RunFailed,
    StepResult,
    platform_agents,
    span_status,
)


@register_runner(ExecutionKind.CREW)
def run_crew(ctx: RunContext):
    definition = ctx.execution.definition or {}
    process = definition.get("process") or "sequential"
    spec = specs.parse_definition(definition)
    if spec.errors:
        raise RunFailed(
            "the crew's YAML is invalid: " + "; ".join(e.as_envelope_error()["message"] for e in spec.errors)
        )
    inputs = ctx.execution.inputs or {}
    crew = CrewRun(
        ctx=ctx,
        spec=spec,
        profiles=_crew_profiles(ctx, spec, inputs, definition.get("model") or ""),
        settings=CrewSettings.of(spec, definition),
        inputs=inputs,
    )
    crew.check_callbacks()
    hierarchical = crew.manager is not None
    ctx.total_steps = len(spec.tasks) + (2 if hierarchical else 0) + (1 if crew.settings.planning else 0)
    ctx.recorder.log(
        f"crew {definition.get('name') or ''} started: {len(spec.agents)} agents, {len(spec.tasks)} tasks, "
        f"{process} process".replace("crew  ", "crew ")
    )
    checkpoint = ctx.execution.checkpoint or {}
    attributes: dict[str, Any] = {"process": process, **({"resumed": True} if checkpoint else {})}
    root = ctx.recorder.span_start(
        SpanKind.TASK, f"crew {definition.get('name') or ctx.execution.run_name}", **attributes
    )
    crew.root = root
    # a run resumed after an approval keeps what its tasks produced before it was parked
    crew.outcomes = {
        key: TaskOutcome(**value) if isinstance(value, dict) else TaskOutcome(key, "", value)
        for key, value in (checkpoint.get("outputs") or {}).items()
    }
    crew.plan = checkpoint.get("crew_plan") or ""
    try:
        if "plan" not in checkpoint:
            _plan(crew, spec)
        final = _run_tasks(crew, spec, checkpoint.get("step") or {})
        if crew.manager is not None:  # hierarchical
            summary = "\n".join(f"{key}: {value.raw}" for key, value in crew.outcomes.items())
            final = ctx.task_step(
                name="review",
                profile=crew.manager,
                parent=root,
                prompt=f"Review the crew's results and give the final answer:\n{summary}",
            ).text
    except (Cancelled, RunFailed, AwaitingApproval) as exc:
        crew.failed.set()
        _join_quietly(crew)
        ctx.recorder.span_end(root, status=span_status(exc), error=str(exc))
        raise
    root.tokens_in, root.tokens_out = ctx.recorder.total_tokens_in, ctx.recorder.total_tokens_out
    root.cost = ctx.recorder.total_cost
    ctx.recorder.span_end(root, output=final[:4000], tasks=list(crew.outcomes))
    return _crew_result(crew, spec, final)


def _crew_profiles(ctx: RunContext, spec, inputs: dict, crew_model: str) -> dict[str, AgentProfile]:
    # platform_agents types its agents as object (apps.runs sits below apps.agents)
    bound = cast(dict[str, Agent], platform_agents(ctx, [a.agent_id for a in spec.agents]))
    profiles = {}
    for a in spec.agents:
        agent = bound.get(a.agent_id) if a.agent_id else None
        profiles[a.key] = AgentProfile(
            key=a.key,
            name=agent.name if agent else a.key,
            role=specs.interpolate(a.role, inputs),
            goal=specs.interpolate(a.goal, inputs),
            backstory=specs.interpolate(a.backstory, inputs),
            model=a.llm or (agent.llm if agent else "") or crew_model,
            tools=a.tools or list(getattr(agent, "tools", []) or []),
            agent=agent,
        )
    return profiles


def _plan(crew: CrewRun, spec) -> None:
    """The hierarchical manager's delegation plan, and with ``planning: true`` the crew's plan
    (CrewAI's planner), which is added to every task's description."""
    ctx, inputs = crew.ctx, crew.inputs
    task_list = "\n".join(f"- {t.key}: {specs.interpolate(t.description, inputs)}" for t in spec.tasks)
    if crew.manager is not None:
        ctx.task_step(
            name="plan",
            profile=crew.manager,
            parent=crew.root,
            prompt=f"Plan the delegation of these tasks to your crew:\n{task_list}",
        )
    if crew.settings.planning:
        planner = AgentProfile(
            key="planner",
            name="Task Execution Planner",
            role="Task Execution Planner",
            goal="Your goal is to create an extremely detailed, step-by-step plan based on the "
            "tasks and tools available to each agent so that they can perform the tasks "
            "in an exemplary manner",
            backstory="Planner agent for crew planning",
            model=crew.settings.planning_llm or ctx.default_model,
        )
        crew.plan = ctx.task_step(
            name="planning",
            profile=planner,
            parent=crew.root,
            prompt=f"Create a step-by-step plan for these tasks:\n{task_list}",
        ).text


def _run_tasks(crew: CrewRun, spec, paused_step: dict) -> str:
    """Every task in order; returns the last task's raw output."""
    ctx = crew.ctx
    agent_keys = list(crew.profiles)
    previous: str | None = None  # the last task that ran in order
    pending: list[str] = []  # async tasks started since then
    for index, task in enumerate(spec.tasks):
        if task.key in crew.outcomes:
            previous = task.key
            ctx.recorder.log(f"task {task.key} kept from before the approval pause", task=task.key)
            continue
        if crew.manager is not None:
            profile = crew.manager
        else:
            profile = crew.profiles[task.agent] if task.agent else crew.profiles[agent_keys[index % len(agent_keys)]]
        if task.tools:
            profile = AgentProfile(**{**profile.__dict__, "tools": list(dict.fromkeys(profile.tools + task.tools))})
        asynchronous = bool(getattr(task, "async_execution", False))
        # without `context`, CrewAI's rule: an async task reads the last in-order task's output, an
        # in-order task the async tasks started before it (waiting for them), else the last one's
        refs = task.context or (pending if pending and not asynchronous else [previous] if previous else [])
        context = [(ref, done.context_text()) for ref in refs if (done := crew.outcome(ref)) is not None]
        if asynchronous:
            crew.submit(task, profile, context)
            pending.append(task.key)
            continue
        previous, pending = task.key, []
        resume = paused_step if paused_step.get("task_key") == task.key else None
        try:
            outcome = crew.execute(task, profile, context, resume)
        except AwaitingApproval as exc:
            crew.join()
            exc.checkpoint.setdefault("step", {})["task_key"] = task.key
            exc.checkpoint.update(outputs=_saved(crew), plan=True, crew_plan=crew.plan)
            exc.request.setdefault("step_id", task.key)
            exc.request.update({k: v for k, v in _approval_options(task).items() if k not in exc.request})
            raise
        crew.outcomes[task.key] = outcome
        if task.human_input:
            crew.join()
            raise AwaitingApproval(
                {
                    "source": "crew_task",
                    "step_id": task.key,
                    "proposed": {"output": outcome.raw},
                    "question": task.approval.get("question") or f"Approve the output of task {task.key!r}?",
                    **_approval_options(task),
                },
                {
                    "outputs": _saved(crew, without=task.key),
                    "plan": True,
                    "crew_plan": crew.plan,
                    "pending_task": task.key,
                },
            )
    crew.join()
    last = crew.outcome(spec.tasks[-1].key)
    return last.raw if last else ""


def _saved(crew: CrewRun, without: str | None = None) -> dict:
    return {key: outcome.__dict__ for key, outcome in crew.outcomes.items() if key != without}


def _join_quietly(crew: CrewRun) -> None:
    try:
        crew.join()
    except (Cancelled, RunFailed):
        pass


def _crew_result(crew: CrewRun, spec, final: str):
    """The raw final answer (seed 001's ``result`` string), or — when a task has structured output
    or an output file — ``{output, json_output (the last task's), tasks_output, files}`` like
    CrewAI's CrewOutput."""
    rich = any(crew.schemas.get(t.key) or getattr(t, "output_file", None) for t in spec.tasks)
    if not rich:
        return final
    ordered = [crew.outcomes[t.key] for t in spec.tasks if t.key in crew.outcomes]
    return {
        "output": final,
        "json_output": ordered[-1].json_output if ordered else None,
        "tasks_output": [o.as_dict() for o in ordered],
        "files": [o.file for o in ordered if o.file],
    }


def _approval_options(task) -> dict:
    """Who may answer a crew task's approval, by when, and what happens if nobody does."""
    options = task.approval or {}
    return {
        "assignee_role": options.get("role") or "",
        "assignee_user": options.get("user") or None,
        "timeout_seconds": options.get("timeout_seconds"),
        "default_action": options.get("default") or "reject",
    }


def _orchestration_profiles(ctx: RunContext) -> list[AgentProfile]:
    ids = ctx.execution.definition.get("agent_ids") or []
    agents = platform_agents(ctx, ids)
    return [AgentProfile.of_agent(agents[str(i)]) for i in ids]


def _input_text(inputs: dict) -> str:
    if not inputs:
        return "Proceed with your task."
    for key in ("input", "prompt", "query", "task", "message", "text"):
        if isinstance(inputs.get(key), str):
            others = {k: v for k, v in inputs.items() if k != key}
            return inputs[key] + (f"\n\nInputs: {json.dumps(others, default=str)}" if others else "")
    return f"Inputs: {json.dumps(inputs, default=str)}"


def _parallel(ctx: RunContext, jobs: list[Callable[[], StepResult]]) -> list[StepResult]:
    """Run steps on threads; the first failure/cancel wins and the others are told to stop."""
    if len(jobs) == 1:
        return [jobs[0]()]
    with ThreadPoolExecutor(max_workers=min(8, len(jobs)), thread_name_prefix="kai-run-branch") as pool:
        futures = [pool.submit(_in_thread, job) for job in jobs]
        results, first_error = [], None
        for future in futures:
            try:
                results.append(future.result())
            except (Cancelled, RunFailed) as exc:
                first_error = first_error or exc
                ctx.handle.cancel(str(exc)) if isinstance(exc, Cancelled) else None
    if first_error:
        raise first_error
    return results


def _in_thread(job):
    try:
        return job()
    finally:
        connection.close()


def _route(router_output: str, workers: list[AgentProfile], config: dict, text: str) -> AgentProfile:
    """The router's choice: a configured keyword rule, else a worker the router's answer names, else the first."""
    lowered = text.lower()
    for rule in (config.get("routing") or {}).get("rules") or config.get("routes") or []:
        if isinstance(rule, dict) and any(str(k).lower() in lowered for k in rule.get("keywords") or []):
            target = str(rule.get("agent") or rule.get("agent_id") or "")
            for worker in workers:
                if target in (str(worker.agent_id), worker.name, worker.key):
                    return worker
    answer = router_output.lower()
    for worker in workers:
        if worker.name.lower() in answer.split("builtin reply to:")[0] or f"[{worker.name.lower()}]" in answer:
            return worker
    scored = sorted(
        workers,
        key=lambda w: -sum(1 for word in (w.role + " " + w.goal).lower().split() if len(word) > 3 and word in lowered),
    )
    return scored[0]


#: how many agent steps an orchestration of each pattern takes, from its profiles (default: one each)
ORCHESTRATION_STEPS = {
    Pattern.ROUTER: lambda profiles: 2,
    Pattern.SUPERVISOR_WORKER: lambda profiles: len(profiles) + 1,
    Pattern.HIERARCHICAL: lambda profiles: len(profiles) + 1,
}


@dataclass(frozen=True)
class _Orchestration:
    """What every pattern's steps share: the run, its root span, the input text and the config."""

    ctx: RunContext
    root: Span
    text: str
    config: dict

    def step(self, profile: AgentProfile, prompt: str, *, name: str | None = None, **extra) -> StepResult:
        return self.ctx.task_step(name=name or profile.name, profile=profile, prompt=prompt, parent=self.root, **extra)

    def each(self, profiles: list[AgentProfile], prompt: str) -> dict[str, str]:
        """The same prompt to every profile at once: their outputs by name."""
        results = _parallel(self.ctx, [partial(self.step, p, prompt) for p in profiles])
        return {p.name: r.text for p, r in zip(profiles, results)}


def _sequential(run: _Orchestration, profiles: list[AgentProfile]) -> tuple[str, dict[str, str]]:
    """Each agent works on the previous one's output."""
    current, outputs = run.text, {}
    for profile in profiles:
        current = run.step(profile, current).text
        outputs[profile.name] = current
    return current, outputs


def _parallel_pattern(run: _Orchestration, profiles: list[AgentProfile]) -> tuple[str, dict[str, str]]:
    """Every agent answers the input at once; the answers side by side."""
    outputs = run.each(profiles, run.text)
    return "\n\n".join(f"[{name}] {out}" for name, out in outputs.items()), outputs


def _ensemble(run: _Orchestration, profiles: list[AgentProfile]) -> tuple[str, dict[str, str]]:
    """Every member answers at once; the last agent synthesizes one answer from theirs."""
    members, synthesizer = profiles[:-1], profiles[-1]
    outputs = run.each(members, run.text)
    answers = "\n".join(f"- {name}: {out}" for name, out in outputs.items())
    final = run.step(
        synthesizer,
        f"Synthesize one answer to: {run.text}\n\nCandidate answers:\n{answers}",
        name=f"synthesize ({synthesizer.name})",
    ).text
    outputs[synthesizer.name] = final
    return final, outputs


def _router(run: _Orchestration, profiles: list[AgentProfile]) -> tuple[str, dict[str, str]]:
    """The first agent picks one specialist among the others, who answers."""
    router, specialists = profiles[0], profiles[1:]
    names = ", ".join(s.name for s in specialists)
    decision = run.step(
        router, f"Choose the one specialist among [{names}] for: {run.text}", name=f"route ({router.name})"
    ).text
    chosen = _route(decision, specialists, run.config, run.text)
    run.ctx.recorder.log(f"router chose {chosen.name}", chosen=str(chosen.agent_id))
    final = run.step(chosen, run.text, routed_by=router.name).text
    return final, {router.name: decision, chosen.name: final}


def _led(run: _Orchestration, profiles: list[AgentProfile], *, parallel: bool) -> tuple[str, dict[str, str]]:
    """The first agent plans, the others work (a supervisor's workers at once on the plan, a
    hierarchy's one after the other on the previous instructions), and the lead combines the reports."""
    lead, workers = profiles[0], profiles[1:]
    plan = run.step(
        lead, f"Split this work among [{', '.join(w.name for w in workers)}]: {run.text}", name=f"plan ({lead.name})"
    ).text
    outputs = {lead.name: plan}
    if parallel:
        outputs.update(run.each(workers, f"{run.text}\n\nSupervisor's plan: {plan}"))
    else:
        current = plan
        for w in workers:
            current = run.step(w, f"{run.text}\n\nManager's instructions: {current}").text
            outputs[w.name] = current
    reports = "\n".join(f"- {w.name}: {outputs[w.name]}" for w in workers)
    final = run.step(
        lead, f"Combine the reports into the final answer to: {run.text}\n\n{reports}", name=f"review ({lead.name})"
    ).text
    return final, outputs


#: each pattern's steps: (the run, its profiles) → (the final answer, each agent's output)
ORCHESTRATION_PATTERNS: dict[str, Callable[[_Orchestration, list[AgentProfile]], tuple[str, dict[str, str]]]] = {
    Pattern.SEQUENTIAL: _sequential,
    Pattern.PARALLEL: _parallel_pattern,
    Pattern.ENSEMBLE: _ensemble,
    Pattern.ROUTER: _router,
    Pattern.SUPERVISOR_WORKER: partial(_led, parallel=True),
    Pattern.HIERARCHICAL: partial(_led, parallel=False),
}


@register_runner(ExecutionKind.ORCHESTRATION)
def run_orchestration(ctx: RunContext):
    definition = ctx.execution.definition or {}
    pattern = definition.get("pattern") or Pattern.SEQUENTIAL
    profiles = _orchestration_profiles(ctx)
    root = ctx.recorder.span_start(
        SpanKind.TASK, f"orchestration {definition.get('name', '')} ({pattern})", pattern=pattern
    )
    ctx.total_steps = ORCHESTRATION_STEPS.get(pattern, len)(profiles)
    ctx.recorder.log(f"orchestration started: {pattern} over {len(profiles)} agents")
    run = _Orchestration(ctx, root, _input_text(ctx.execution.inputs or {}), definition.get("config") or {})
    try:
        if pattern not in ORCHESTRATION_PATTERNS:
            raise RunFailed(f"unknown pattern {pattern!r}")
        final, outputs = ORCHESTRATION_PATTERNS[pattern](run, profiles)
    except AwaitingApproval as exc:
        error = RunFailed(
            f"{exc} — tool calls that need approval are not supported in orchestrations; "
            "run the agent in a crew instead"
        )
        ctx.recorder.span_end(root, status="error", error=str(error))
        raise error
    except (Cancelled, RunFailed) as exc:
        ctx.recorder.span_end(root, status="cancelled" if isinstance(exc, Cancelled) else "error", error=str(exc))
        raise
    root.tokens_in, root.tokens_out, root.cost = (
        ctx.recorder.total_tokens_in,
        ctx.recorder.total_tokens_out,
        ctx.recorder.total_cost,
    )
    ctx.recorder.span_end(root, output=final[:4000])
    return {
        "output": final,
        "outputs": outputs,
        "trace_id": ctx.execution.trace_id,
        "agents_executed": list(ctx.agents_executed),
        "total_cost": str(ctx.recorder.total_cost),
    }
