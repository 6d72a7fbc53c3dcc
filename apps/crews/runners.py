"""How the run engine runs crews and orchestrations: registered with ``apps.runs.registry`` for the
``crew`` and ``orchestration`` kinds (imported by ``CrewsConfig.ready``)."""
from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from django.db import connection

from apps.crews import specs
from apps.crews.models import Pattern
from apps.runs.models import ExecutionKind, SpanKind
from apps.runs.prompts import task_prompt
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
    spec = specs.parse_crew(definition.get("agents_yaml", ""), definition.get("tasks_yaml", ""), process)
    if spec.errors:
        raise RunFailed("the crew's YAML is invalid: " + "; ".join(e.as_envelope_error()["message"] for e in spec.errors))
    inputs = ctx.execution.inputs or {}
    crew_model = definition.get("model") or ""
    bound = platform_agents(ctx, [a.agent_id for a in spec.agents])
    profiles = {}
    for a in spec.agents:
        agent = bound.get(a.agent_id) if a.agent_id else None
        profiles[a.key] = AgentProfile(
            key=a.key, name=agent.name if agent else a.key, role=specs.interpolate(a.role, inputs),
            goal=specs.interpolate(a.goal, inputs), backstory=specs.interpolate(a.backstory, inputs),
            model=a.llm or (agent.llm if agent else "") or crew_model, tools=a.tools or list(getattr(agent, "tools", []) or []),
            agent=agent)
    ctx.total_steps = len(spec.tasks) + (2 if process == "hierarchical" else 0)
    ctx.recorder.log(f"crew {definition.get('name') or ''} started: {len(spec.agents)} agents, {len(spec.tasks)} tasks, "
                     f"{process} process".replace("crew  ", "crew "))
    checkpoint = ctx.execution.checkpoint or {}
    root = ctx.recorder.span_start(SpanKind.TASK, f"crew {definition.get('name') or ctx.execution.run_name}",
                                   process=process, **({"resumed": True} if checkpoint else {}))
    ctx.root_span = root
    # a run resumed after an approval keeps what its tasks produced before it was parked
    outputs: dict[str, str] = dict(checkpoint.get("outputs") or {})
    paused_step = checkpoint.get("step") or {}
    manager = AgentProfile(key="manager", name="Crew Manager", role="Crew Manager",
                           goal="Coordinate the crew so the tasks are done well and in order",
                           backstory="You are an experienced manager who delegates to the right specialist.",
                           model=crew_model)
    try:
        if process == "hierarchical" and "plan" not in checkpoint:
            task_list = "\n".join(f"- {t.key}: {specs.interpolate(t.description, inputs)}" for t in spec.tasks)
            ctx.task_step(name="plan", profile=manager, parent=root,
                          prompt=f"Plan the delegation of these tasks to your crew:\n{task_list}")
        previous: str | None = None
        agent_keys = list(profiles)
        for index, task in enumerate(spec.tasks):
            if task.key in outputs:
                previous = outputs[task.key]
                ctx.recorder.log(f"task {task.key} kept from before the approval pause", task=task.key)
                continue
            profile = profiles.get(task.agent) if task.agent else profiles[agent_keys[index % len(agent_keys)]]
            context = [(ref, outputs[ref]) for ref in task.context] if task.context else (
                [(spec.tasks[index - 1].key, previous)] if previous is not None else [])
            prompt = task_prompt(specs.interpolate(task.description, inputs),
                                  specs.interpolate(task.expected_output, inputs), context)
            if task.tools:
                profile = AgentProfile(**{**profile.__dict__, "tools": list(dict.fromkeys(profile.tools + task.tools))})
            resume = paused_step if paused_step.get("task_key") == task.key else None
            try:
                result = ctx.task_step(name=task.key, profile=profile, prompt=prompt, parent=root,
                                       agent_key=profile.key, resume=resume)
            except AwaitingApproval as exc:
                exc.checkpoint.setdefault("step", {})["task_key"] = task.key
                exc.checkpoint.update(outputs=dict(outputs), plan=True)
                exc.request.setdefault("step_id", task.key)
                exc.request.update({k: v for k, v in _approval_options(task).items() if k not in exc.request})
                raise
            if task.human_input:
                raise AwaitingApproval(
                    {"source": "crew_task", "step_id": task.key, "proposed": {"output": result.text},
                     "question": task.approval.get("question") or f"Approve the output of task {task.key!r}?",
                     **_approval_options(task)},
                    {"outputs": dict(outputs), "plan": True, "pending_task": task.key})
            outputs[task.key] = previous = result.text
        final = previous or ""
        if process == "hierarchical":
            summary = "\n".join(f"{key}: {value}" for key, value in outputs.items())
            final = ctx.task_step(name="review", profile=manager, parent=root,
                                  prompt=f"Review the crew's results and give the final answer:\n{summary}").text
    except (Cancelled, RunFailed, AwaitingApproval) as exc:
        ctx.recorder.span_end(root, status=span_status(exc), error=str(exc))
        raise
    root.tokens_in, root.tokens_out = ctx.recorder.total_tokens_in, ctx.recorder.total_tokens_out
    root.cost = ctx.recorder.total_cost
    ctx.recorder.span_end(root, output=final[:4000], tasks=list(outputs))
    return final


def _approval_options(task) -> dict:
    """Who may answer a crew task's approval, by when, and what happens if nobody does."""
    options = task.approval or {}
    return {"assignee_role": options.get("role") or "", "assignee_user": options.get("user") or None,
            "timeout_seconds": options.get("timeout_seconds"), "default_action": options.get("default") or "reject"}


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
    scored = sorted(workers, key=lambda w: -sum(1 for word in (w.role + " " + w.goal).lower().split()
                                                 if len(word) > 3 and word in lowered))
    return scored[0]


#: how many agent steps an orchestration of each pattern takes, from its profiles (default: one each)
ORCHESTRATION_STEPS = {Pattern.ROUTER: lambda profiles: 2,
                       Pattern.SUPERVISOR_WORKER: lambda profiles: len(profiles) + 1,
                       Pattern.HIERARCHICAL: lambda profiles: len(profiles) + 1}


@register_runner(ExecutionKind.ORCHESTRATION)
def run_orchestration(ctx: RunContext):
    definition = ctx.execution.definition or {}
    pattern = definition.get("pattern") or Pattern.SEQUENTIAL
    config = definition.get("config") or {}
    profiles = _orchestration_profiles(ctx)
    text = _input_text(ctx.execution.inputs or {})
    root = ctx.recorder.span_start(SpanKind.TASK, f"orchestration {definition.get('name', '')} ({pattern})",
                                   pattern=pattern)
    ctx.total_steps = ORCHESTRATION_STEPS.get(pattern, len)(profiles)
    ctx.recorder.log(f"orchestration started: {pattern} over {len(profiles)} agents")
    outputs: dict[str, str] = {}
    try:
        if pattern == Pattern.SEQUENTIAL:
            current = text
            for profile in profiles:
                current = ctx.task_step(name=profile.name, profile=profile, prompt=current, parent=root).text
                outputs[profile.name] = current
            final = current
        elif pattern == Pattern.PARALLEL:
            results = _parallel(ctx, [lambda p=p: ctx.task_step(name=p.name, profile=p, prompt=text, parent=root)
                                      for p in profiles])
            outputs = {p.name: r.text for p, r in zip(profiles, results)}
            final = "\n\n".join(f"[{name}] {out}" for name, out in outputs.items())
        elif pattern == Pattern.ENSEMBLE:
            members, synthesizer = profiles[:-1], profiles[-1]
            results = _parallel(ctx, [lambda p=p: ctx.task_step(name=p.name, profile=p, prompt=text, parent=root)
                                      for p in members])
            outputs = {p.name: r.text for p, r in zip(members, results)}
            answers = "\n".join(f"- {name}: {out}" for name, out in outputs.items())
            final = ctx.task_step(name=f"synthesize ({synthesizer.name})", profile=synthesizer, parent=root,
                                  prompt=f"Synthesize one answer to: {text}\n\nCandidate answers:\n{answers}").text
            outputs[synthesizer.name] = final
        elif pattern == Pattern.ROUTER:
            router, specialists = profiles[0], profiles[1:]
            names = ", ".join(s.name for s in specialists)
            decision = ctx.task_step(name=f"route ({router.name})", profile=router, parent=root,
                                     prompt=f"Choose the one specialist among [{names}] for: {text}").text
            chosen = _route(decision, specialists, config, text)
            ctx.recorder.log(f"router chose {chosen.name}", chosen=str(chosen.agent_id))
            final = ctx.task_step(name=chosen.name, profile=chosen, prompt=text, parent=root, routed_by=router.name).text
            outputs = {router.name: decision, chosen.name: final}
        elif pattern in (Pattern.SUPERVISOR_WORKER, Pattern.HIERARCHICAL):
            lead, workers = profiles[0], profiles[1:]
            plan = ctx.task_step(name=f"plan ({lead.name})", profile=lead, parent=root,
                                 prompt=f"Split this work among [{', '.join(w.name for w in workers)}]: {text}").text
            outputs[lead.name] = plan
            if pattern == Pattern.SUPERVISOR_WORKER:
                results = _parallel(ctx, [lambda w=w: ctx.task_step(
                    name=w.name, profile=w, parent=root, prompt=f"{text}\n\nSupervisor's plan: {plan}") for w in workers])
                for w, r in zip(workers, results):
                    outputs[w.name] = r.text
            else:
                current = plan
                for w in workers:
                    current = ctx.task_step(name=w.name, profile=w, parent=root,
                                            prompt=f"{text}\n\nManager's instructions: {current}").text
                    outputs[w.name] = current
            reports = "\n".join(f"- {w.name}: {outputs[w.name]}" for w in workers)
            final = ctx.task_step(name=f"review ({lead.name})", profile=lead, parent=root,
                                  prompt=f"Combine the reports into the final answer to: {text}\n\n{reports}").text
        else:
            raise RunFailed(f"unknown pattern {pattern!r}")
    except AwaitingApproval as exc:
        error = RunFailed(f"{exc} — tool calls that need approval are not supported in orchestrations; "
                          "run the agent in a crew instead")
        ctx.recorder.span_end(root, status="error", error=str(error))
        raise error
    except (Cancelled, RunFailed) as exc:
        ctx.recorder.span_end(root, status="cancelled" if isinstance(exc, Cancelled) else "error", error=str(exc))
        raise
    root.tokens_in, root.tokens_out, root.cost = (ctx.recorder.total_tokens_in, ctx.recorder.total_tokens_out,
                                                  ctx.recorder.total_cost)
    ctx.recorder.span_end(root, output=final[:4000])
    return {"output": final, "outputs": outputs, "trace_id": ctx.execution.trace_id,
            "agents_executed": list(ctx.agents_executed), "total_cost": str(ctx.recorder.total_cost)}
