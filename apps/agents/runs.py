"""The one-agent kinds of runs (task, command, execute, stream-prompt, test, workflow step):
registered with ``apps.runs.registry`` by ``AgentsConfig.ready``. Every way of calling an agent
ends up here, in the run engine's worker."""

from __future__ import annotations

import json
import time

from apps.runs.models import ExecutionKind
from apps.runs.prompts import interpolate, task_prompt
from apps.runs.registry import register_runner, step_runner_for
from apps.runs.runner import AgentProfile, RunContext, RunFailed


def _single_agent(ctx: RunContext):
    agent = ctx.execution.agent
    if agent is None:
        raise RunFailed("the agent of this run no longer exists")
    if not agent.is_active or agent.status == "disabled":
        raise RunFailed(f"agent {agent.name!r} is disabled")
    profile = AgentProfile.of_agent(agent)
    if ctx.execution.model:
        profile.model = ctx.execution.model
    return profile


@register_runner(ExecutionKind.AGENT_TASK)
def run_agent_task(ctx: RunContext):
    profile = _single_agent(ctx)
    d = ctx.execution.definition or {}
    inputs = ctx.execution.inputs or {}
    prompt = task_prompt(
        interpolate(d.get("description", ""), inputs),
        interpolate(d.get("expected_output", ""), inputs),
        [("inputs", json.dumps(inputs, default=str))] if inputs else None,
    )
    return ctx.task_step(
        name=d.get("name") or "task", profile=profile, prompt=prompt, parent=None, resume=_paused_step(ctx)
    ).text


def _paused_step(ctx: RunContext) -> dict | None:
    """The checkpoint of a one-step run parked on a tool call that needed approval."""
    return (ctx.execution.checkpoint or {}).get("step") or None


def _command_prompt(d: dict) -> str:
    action = d.get("action") or d.get("command") or ""
    parameters = d.get("parameters") if d.get("parameters") is not None else d.get("params")
    prompt = f"Command: {action}"
    if parameters:
        prompt += f"\nParameters: {json.dumps(parameters, default=str)}"
    if d.get("context"):
        prompt += f"\nContext: {json.dumps(d['context'], default=str)}"
    return prompt


@register_runner(ExecutionKind.WORKFLOW_STEP)
def run_workflow_step(ctx: RunContext):
    """An agent step, or a step type another app registered (``register_step_runner``)."""
    step_runner = step_runner_for((ctx.execution.definition or {}).get("type"))
    return step_runner(ctx) if step_runner else run_agent_command(ctx)


@register_runner(ExecutionKind.AGENT_COMMAND)
def run_agent_command(ctx: RunContext):
    profile = _single_agent(ctx)
    d = ctx.execution.definition or {}
    return ctx.task_step(
        name=str(d.get("action") or d.get("command") or "command"),
        profile=profile,
        prompt=_command_prompt(d),
        parent=None,
        resume=_paused_step(ctx),
    ).text


@register_runner(ExecutionKind.AGENT_EXECUTE)
def run_agent_execute(ctx: RunContext):
    """Seed 002: AgentCommand → AgentResponse."""
    profile = _single_agent(ctx)
    d = ctx.execution.definition or {}
    started = time.monotonic()
    step = ctx.task_step(
        name=str(d.get("action") or "execute"),
        profile=profile,
        prompt=_command_prompt(d),
        parent=None,
        resume=_paused_step(ctx),
    )
    resources = [ctx.resolve(profile.model).requested] + list(profile.tools)
    return {
        "success": True,
        "data": step.text,
        "error": None,
        "metadata": {
            "execution_time": round((time.monotonic() - started) * 1000, 2),
            "resources_used": resources,
            "next_suggested_actions": [],
            "workflow_triggered": [],
        },
    }


@register_runner(ExecutionKind.AGENT_PROMPT)
def run_agent_prompt(ctx: RunContext):
    profile = _single_agent(ctx)
    d = ctx.execution.definition or {}
    return ctx.agent_step(profile=profile, prompt=d.get("prompt", ""), parent=None, resume=_paused_step(ctx)).text


@register_runner(ExecutionKind.AGENT_TEST)
def run_agent_test(ctx: RunContext):
    """A synchronous prompt (``agents/{id}/test``, deployments): the answer with what it cost."""
    profile = _single_agent(ctx)
    started = time.monotonic()
    step = ctx.agent_step(
        profile=profile,
        prompt=(ctx.execution.definition or {}).get("prompt", ""),
        parent=None,
        resume=_paused_step(ctx),
    )
    resolved = ctx.resolve(profile.model)
    body = {
        "output": step.text,
        "tokens": {"input": step.tokens_in, "output": step.tokens_out, "total": step.tokens_in + step.tokens_out},
        "cost": str(step.cost),
        "latency_ms": round((time.monotonic() - started) * 1000, 2),
        "model": resolved.model,
        "provider": resolved.label,
        "provider_type": resolved.provider_type,
        "tool_calls": step.calls,
    }
    if resolved.note:
        body["note"] = resolved.note
    return body
