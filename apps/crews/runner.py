"""The run engine: claims a PENDING execution, runs it, and ends it COMPLETED, FAILED or CANCELLED.

Every kind of run is built from one step, ``RunContext.agent_step`` (an agent answers a prompt,
calling tools when the model asks), traced as task → agent → llm/tool spans. While runs are in
flight, one heartbeat thread per worker process stamps ``heartbeat_at`` on all of them in a single
UPDATE every few seconds and reads back ``cancel_requested``; runners check an in-memory flag
between tokens, so a cancel stops token spending within seconds without a query per token.
"""
from __future__ import annotations

import json
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Callable

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from apps.crews import llm as llm_layer
from apps.crews import specs
from apps.crews.models import Execution, ExecutionKind, ExecutionStatus, Pattern, SpanKind
from apps.crews.recorder import RunRecorder, Span
from apps.crews.services import execution_claim, execution_enqueue, execution_transition
from kai_platform.llm import LLMError, ToolCall
from kai_platform.llm.base import count_tokens, messages_tokens
from kai_platform.llm.pricing import cost_usd

logger = logging.getLogger(__name__)
S = ExecutionStatus

#: running executions at once per organization plan (``settings.max_concurrent_runs`` overrides)
PLAN_CONCURRENCY = {"free": 2, "standard": 5, "pro": 20, "enterprise": 100}
MAX_TOOL_ROUNDS = 5
LLM_PARAM_KEYS = ("temperature", "max_tokens", "top_p", "latency_ms", "tokens_per_s", "stop")


class Cancelled(Exception):
    pass


class RunFailed(Exception):
    """A run failed for a reason its owner can act on; the message is the execution's ``error``."""


class AwaitingApproval(Exception):
    """A runner stops here until a person answers: ``request`` says what to ask (apps.approvals
    ``approval_request`` keywords), ``checkpoint`` what the run resumes from. Outer layers add to
    the checkpoint as it propagates; ``run`` parks the execution WAITING_FOR_APPROVAL."""

    def __init__(self, request: dict, checkpoint: dict | None = None):
        super().__init__(request.get("question", "approval required"))
        self.request = request
        self.checkpoint = checkpoint or {}


def tool_requires_approval(tool) -> bool:
    return bool((getattr(tool, "configuration", None) or {}).get("requires_approval"))


def heartbeat_seconds() -> float:
    return float(getattr(settings, "KAI_RUN_HEARTBEAT_SECONDS", 2))


def stale_seconds() -> float:
    return float(getattr(settings, "KAI_RUN_STALE_SECONDS", 60))


# --- in-flight registry and the heartbeat thread -----------------------------------------------

@dataclass
class RunHandle:
    execution_id: str
    cancel_event: threading.Event = field(default_factory=threading.Event)
    cancel_reason: str = ""

    def cancel(self, reason: str) -> None:
        if not self.cancel_event.is_set():
            self.cancel_reason = reason
            self.cancel_event.set()


class InFlightRegistry:
    """The executions this worker process is running, and the thread that heartbeats them."""

    def __init__(self):
        self._lock = threading.Lock()
        self._runs: dict[str, RunHandle] = {}
        self._thread: threading.Thread | None = None

    def add(self, execution_id) -> RunHandle:
        handle = RunHandle(str(execution_id))
        with self._lock:
            self._runs[handle.execution_id] = handle
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="kai-run-heartbeat", daemon=True)
                self._thread.start()
        return handle

    def remove(self, handle: RunHandle) -> None:
        with self._lock:
            self._runs.pop(handle.execution_id, None)

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._runs)

    def _loop(self) -> None:
        while True:
            time.sleep(heartbeat_seconds())
            try:
                self.beat()
            except Exception:
                logger.warning("run heartbeat failed; retrying", exc_info=True)
                try:
                    connection.close()
                except Exception:
                    pass

    def beat(self) -> None:
        ids = self.ids()
        if not ids:
            return
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "UPDATE crews_execution SET heartbeat_at = now() WHERE id = ANY(%s::uuid[]) "
                    "AND status IN ('PREPARING', 'RUNNING') RETURNING id, cancel_requested",
                    [ids])
                rows = cursor.fetchall()
        finally:
            connection.close()
        alive = set()
        with self._lock:
            for execution_id, cancel_requested in rows:
                alive.add(str(execution_id))
                handle = self._runs.get(str(execution_id))
                if handle and cancel_requested:
                    handle.cancel("cancelled by user")
            for execution_id in ids:
                handle = self._runs.get(execution_id)
                if handle and execution_id not in alive:
                    handle.cancel("the execution was ended elsewhere")


registry = InFlightRegistry()


# --- the profile of an agent as a run sees it --------------------------------------------------

@dataclass
class AgentProfile:
    key: str
    name: str
    role: str = ""
    goal: str = ""
    backstory: str = ""
    model: str = ""
    tools: list[str] = field(default_factory=list)
    agent: object = None  # agents.Agent when the profile is a platform agent

    @property
    def agent_id(self):
        return self.agent.pk if self.agent is not None else None

    def system_prompt(self) -> str:
        parts = [f"You are {self.role or self.name}."]
        if self.backstory:
            parts.append(self.backstory)
        if self.goal:
            parts.append(f"Your personal goal is: {self.goal}")
        return "\n".join(parts)

    @classmethod
    def of_agent(cls, agent) -> "AgentProfile":
        return cls(key=str(agent.pk), name=agent.name, role=agent.role or agent.name, goal=agent.goal,
                   backstory=agent.backstory, model=agent.llm, tools=list(agent.tools or []), agent=agent)


@dataclass
class StepResult:
    text: str
    tokens_in: int = 0
    tokens_out: int = 0
    cost: Decimal = Decimal(0)
    tool_calls: int = 0


class RunContext:
    """What a kind's runner works with: the execution, its recorder, cancel state, LLM access."""

    def __init__(self, execution: Execution, handle: RunHandle):
        self.execution = execution
        self.organization = execution.organization
        self.handle = handle
        self.recorder = RunRecorder(execution_id=execution.pk, organization_id=execution.organization_id,
                                    trace_id=execution.trace_id)
        self.params = {k: v for k, v in (execution.params or {}).items() if k in LLM_PARAM_KEYS}
        self.default_model = execution.model or ""
        self._resolved: dict[str, llm_layer.ResolvedModel] = {}
        self._resolve_lock = threading.Lock()
        self.agents_executed: list[str] = []
        self._stream_key = (f"{settings.KAI_REDIS_PREFIX}:stream:{execution.stream_id}"
                            if execution.stream_id else None)
        self._tools_cache: dict[str, object] = {}
        self.citations: list[dict] = []  # what tools cited (knowledge chunks): kept in the result

    # --- cancel -----------------------------------------------------------------------------
    def check_cancel(self) -> None:
        if self.handle.cancel_event.is_set():
            raise Cancelled(self.handle.cancel_reason or "cancelled")

    # --- streaming to clients ---------------------------------------------------------------
    def stream_chunk(self, text: str, **extra) -> None:
        if not self._stream_key:
            return
        stream_push(self._stream_key, {"chunk": text, **{k: str(v) for k, v in extra.items()}})

    # --- models -----------------------------------------------------------------------------
    def resolve(self, model_name: str) -> llm_layer.ResolvedModel:
        name = model_name or self.default_model
        with self._resolve_lock:
            if name not in self._resolved:
                try:
                    resolved = llm_layer.resolve_model(organization=self.organization, model_name=name)
                except llm_layer.ModelUnavailable as exc:
                    raise RunFailed(str(exc))
                if resolved.note:
                    self.recorder.log(resolved.note, level="warning", model=resolved.requested)
                self._resolved[name] = resolved
            return self._resolved[name]

    # --- tools ------------------------------------------------------------------------------
    def tool_rows(self, names: list[str]) -> list:
        if not names:
            return []
        from apps.agents.models import Tool

        missing = [n for n in names if n not in self._tools_cache]
        if missing:
            for tool in Tool.objects.for_org(self.organization).filter(name__in=missing, enabled=True):
                self._tools_cache[tool.name] = tool
        return [self._tools_cache[n] for n in names if n in self._tools_cache]

    # --- one LLM call -----------------------------------------------------------------------
    def llm_call(self, *, profile: AgentProfile, messages: list[dict], tools: list[dict] | None, parent: Span | None):
        resolved = self.resolve(profile.model)
        self.check_cancel()
        if llm_layer.budgets_configured(organization=self.organization, resolved=resolved, agent=profile.agent):
            self.recorder.flush()  # the check must see what this run already spent
            try:
                llm_layer.check_budgets(organization=self.organization, resolved=resolved, agent=profile.agent)
            except llm_layer.BudgetExceeded as exc:
                raise RunFailed(str(exc))
        try:
            failures = llm_layer.breaker_allow(resolved.provider_key)
        except llm_layer.CircuitOpen as exc:
            raise RunFailed(str(exc))
        span = self.recorder.span_start(SpanKind.LLM, resolved.model, parent, agent_id=profile.agent_id,
                                        model=resolved.model, provider=resolved.provider_type,
                                        requested_model=resolved.requested)
        if not connection.in_atomic_block:
            connection.close()  # never hold a connection while the provider thinks
        parts: list[str] = []
        calls = []
        usage = None
        counted_out = 0
        estimated_in = messages_tokens(messages)
        cancelled = False
        stream = resolved.client.stream(messages, tools or None, dict(self.params))
        try:
            for chunk in stream:
                if self.handle.cancel_event.is_set():
                    cancelled = True
                    break
                if chunk.kind == "text" and chunk.text:
                    parts.append(chunk.text)
                    n = count_tokens(chunk.text)
                    counted_out += n
                    self.recorder.tokens(tokens_out=n)
                    self.stream_chunk(chunk.text)
                    self.recorder.maybe_flush()
                elif chunk.kind == "tool_call" and chunk.tool_call:
                    calls.append(chunk.tool_call)
                elif chunk.kind == "usage" and chunk.usage:
                    usage = chunk.usage
        except LLMError as exc:
            if exc.kind in llm_layer.BREAKER_KINDS:
                llm_layer.breaker_failure(resolved.provider_key)
            self._finish_llm_span(span, resolved, profile, estimated_in, counted_out, status="error",
                                  error=f"{exc.kind}: {exc.message}")
            raise RunFailed(f"LLM call to {resolved.requested!r} failed ({exc.kind}): {exc.message}")
        finally:
            close = getattr(stream, "close", None)
            if close:
                close()
        if cancelled:
            self._finish_llm_span(span, resolved, profile, estimated_in, counted_out, status="cancelled")
            raise Cancelled(self.handle.cancel_reason or "cancelled")
        llm_layer.breaker_success(resolved.provider_key, failures)
        tokens_in = usage.input_tokens if usage and usage.input_tokens else estimated_in
        tokens_out = usage.output_tokens if usage and (usage.output_tokens or not counted_out) else counted_out
        self.recorder.tokens(tokens_out=tokens_out - counted_out)  # the provider's count is the truth
        cost = self._finish_llm_span(span, resolved, profile, tokens_in, tokens_out, counted=True,
                                     tool_calls=[c.name for c in calls])
        return "".join(parts), calls, tokens_in, tokens_out, cost

    def _finish_llm_span(self, span: Span, resolved, profile: AgentProfile, tokens_in: int, tokens_out: int, *,
                         status: str = "ok", counted: bool = False, **attributes) -> Decimal:
        cost = cost_usd(resolved.pricing_model, tokens_in, tokens_out, resolved.pricing_override)
        span.tokens_in, span.tokens_out, span.cost = tokens_in, tokens_out, cost
        self.recorder.tokens(tokens_in=tokens_in, cost=cost)
        self.recorder.span_end(span, status=status, **attributes)
        self.recorder.usage(agent_id=profile.agent_id, agent_name=profile.name, model=resolved.requested,
                            tokens_in=tokens_in, tokens_out=tokens_out, cost=cost, provider=resolved.provider)
        return cost

    # --- an agent answers a prompt ----------------------------------------------------------
    def agent_step(self, *, profile: AgentProfile, prompt: str, parent: Span | None, label: str = "",
                   resume: dict | None = None) -> StepResult:
        """``resume``: the checkpoint of this step parked on a tool call that needed approval (its
        messages, the pending calls and the decision); the conversation goes on from there."""
        self.check_cancel()
        span = self.recorder.span_start(SpanKind.AGENT, profile.role or profile.name, parent, agent_id=profile.agent_id,
                                        agent_key=profile.key)
        self.recorder.log(f"{profile.role or profile.name} started{(' ' + label) if label else ''}",
                          agent=profile.key, agent_id=str(profile.agent_id) if profile.agent_id else None)
        tool_rows = self.tool_rows(profile.tools)
        tool_specs = [{"name": t.name, "description": t.description or t.name,
                       "parameters": t.parameters_schema or {"type": "object", "properties": {}}} for t in tool_rows]
        messages = [{"role": "system", "content": profile.system_prompt()}, {"role": "user", "content": prompt}]
        result = StepResult(text="")
        first_round = 0
        try:
            if resume:
                messages, first_round = list(resume["messages"]), int(resume.get("round", 0)) + 1
                decision = resume.get("decision") or {}
                for call_data in resume.get("calls") or []:
                    call = ToolCall(call_data["id"], call_data["name"], dict(call_data.get("arguments") or {}))
                    if decision.get("arguments") is not None and call.id == decision.get("call_id"):
                        call = ToolCall(call.id, call.name, dict(decision["arguments"]))
                    result.tool_calls += 1
                    messages.append({"role": "tool", "tool_call_id": call.id, "name": call.name,
                                     "content": self._run_tool(call, tool_rows, profile, span)})
            for _round in range(first_round, MAX_TOOL_ROUNDS + 1):
                text, calls, tin, tout, cost = self.llm_call(profile=profile, messages=messages,
                                                             tools=tool_specs if _round < MAX_TOOL_ROUNDS else None,
                                                             parent=span)
                result.tokens_in += tin
                result.tokens_out += tout
                result.cost += cost
                if not calls:
                    result.text = text
                    break
                messages.append({"role": "assistant", "content": text, "tool_calls": [c.as_dict() for c in calls]})
                gated = [c for c in calls if any(t.name == c.name and tool_requires_approval(t) for t in tool_rows)]
                if gated:
                    call = gated[0]
                    raise AwaitingApproval(
                        {"source": "tool_call", "question": f"Allow {profile.role or profile.name} to call tool "
                                                            f"{call.name!r}?",
                         "proposed": {"tool": call.name, "arguments": call.arguments, "call_id": call.id}},
                        {"step": {"messages": messages, "round": _round, "call_id": call.id,
                                  "calls": [c.as_dict() for c in calls]}})
                for call in calls:
                    result.tool_calls += 1
                    messages.append({"role": "tool", "tool_call_id": call.id, "name": call.name,
                                     "content": self._run_tool(call, tool_rows, profile, span)})
        except (Cancelled, RunFailed, AwaitingApproval) as exc:
            span.tokens_in, span.tokens_out, span.cost = result.tokens_in, result.tokens_out, result.cost
            self.recorder.span_end(span, status=_span_status(exc), error=str(exc))
            raise
        span.tokens_in, span.tokens_out, span.cost = result.tokens_in, result.tokens_out, result.cost
        self.recorder.span_end(span, output=result.text[:4000], tool_calls=result.tool_calls)
        self.recorder.log(f"{profile.role or profile.name} finished{(' ' + label) if label else ''}",
                          agent=profile.key, output=result.text[:2000], tokens=result.tokens_in + result.tokens_out)
        if profile.agent_id and str(profile.agent_id) not in self.agents_executed:
            self.agents_executed.append(str(profile.agent_id))
        self.recorder.maybe_flush()
        return result

    def _run_tool(self, call, tool_rows, profile: AgentProfile, parent: Span) -> str:
        from apps.agents.tools.base import ToolContext, ToolError, run_tool

        self.check_cancel()
        span = self.recorder.span_start(SpanKind.TOOL, call.name, parent, agent_id=profile.agent_id,
                                        arguments=call.arguments)
        tool = next((t for t in tool_rows if t.name == call.name), None)
        try:
            if tool is None:
                raise ToolError(f"tool {call.name!r} is not available to this agent")
            output = run_tool(tool, call.arguments, ToolContext(organization=self.organization, agent=profile.agent,
                                                                actor=self.execution.created_by,
                                                                citations=self.citations))
            text = output if isinstance(output, str) else json.dumps(output, default=str)
            self.recorder.span_end(span, output=text[:2000])
            self.recorder.log(f"tool {call.name} returned", tool=call.name, output=text[:2000])
        except Exception as exc:  # a tool's failure is the model's to handle, not the run's
            text = f"error: {exc}"
            self.recorder.span_end(span, status="error", error=str(exc)[:2000])
            self.recorder.log(f"tool {call.name} failed: {exc}", level="warning", tool=call.name)
        finally:
            if not connection.in_atomic_block:
                connection.close()
        return text

    def task_step(self, *, name: str, profile: AgentProfile, prompt: str, parent: Span | None,
                  resume: dict | None = None, **attributes) -> StepResult:
        span = self.recorder.span_start(SpanKind.TASK, name, parent, agent_id=profile.agent_id, **attributes)
        try:
            result = self.agent_step(profile=profile, prompt=prompt, parent=span, label=f"task {name}", resume=resume)
        except (Cancelled, RunFailed, AwaitingApproval) as exc:
            self.recorder.span_end(span, status=_span_status(exc), error=str(exc))
            raise
        span.tokens_in, span.tokens_out, span.cost = result.tokens_in, result.tokens_out, result.cost
        self.recorder.span_end(span, output=result.text[:4000])
        return result


def _span_status(exc: Exception) -> str:
    return {Cancelled: "cancelled", AwaitingApproval: "paused"}.get(type(exc), "error")


def _task_prompt(description: str, expected_output: str = "", context: list[tuple[str, str]] | None = None) -> str:
    parts = [description.strip()]
    if expected_output:
        parts.append(f"Expected output: {expected_output.strip()}")
    for name, output in context or []:
        parts.append(f"Context from {name}: {output.strip()}")
    return "\n\n".join(parts)


# --- runners per kind --------------------------------------------------------------------------

Runner = Callable[[RunContext], object]
RUNNERS: dict[str, Runner] = {}


def register_runner(kind: str):
    """Other apps plug a kind in (the workflows app registers ``workflow``)."""
    def decorator(fn: Runner) -> Runner:
        RUNNERS[kind] = fn
        return fn
    return decorator


def _platform_agents(ctx: RunContext, ids) -> dict[str, object]:
    from apps.agents.models import Agent

    ids = [str(i) for i in ids if i]
    if not ids:
        return {}
    found = {str(a.pk): a for a in Agent.objects.for_org(ctx.organization).filter(pk__in=ids)}
    missing = [i for i in ids if i not in found]
    if missing:
        raise RunFailed(f"agent{'s' if len(missing) > 1 else ''} {', '.join(missing)} no longer exist")
    disabled = [a.name for a in found.values() if not a.is_active or a.status == "disabled"]
    if disabled:
        raise RunFailed(f"agent {disabled[0]!r} is disabled")
    return found


@register_runner(ExecutionKind.CREW)
def run_crew(ctx: RunContext):
    definition = ctx.execution.definition or {}
    process = definition.get("process") or "sequential"
    spec = specs.parse_crew(definition.get("agents_yaml", ""), definition.get("tasks_yaml", ""), process)
    if spec.errors:
        raise RunFailed("the crew's YAML is invalid: " + "; ".join(e.as_envelope_error()["message"] for e in spec.errors))
    inputs = ctx.execution.inputs or {}
    crew_model = definition.get("model") or ""
    bound = _platform_agents(ctx, [a.agent_id for a in spec.agents])
    profiles = {}
    for a in spec.agents:
        agent = bound.get(a.agent_id) if a.agent_id else None
        profiles[a.key] = AgentProfile(
            key=a.key, name=agent.name if agent else a.key, role=specs.interpolate(a.role, inputs),
            goal=specs.interpolate(a.goal, inputs), backstory=specs.interpolate(a.backstory, inputs),
            model=a.llm or (agent.llm if agent else "") or crew_model, tools=a.tools or list(getattr(agent, "tools", []) or []),
            agent=agent)
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
            prompt = _task_prompt(specs.interpolate(task.description, inputs),
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
        ctx.recorder.span_end(root, status=_span_status(exc), error=str(exc))
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
    agents = _platform_agents(ctx, ids)
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


@register_runner(ExecutionKind.ORCHESTRATION)
def run_orchestration(ctx: RunContext):
    definition = ctx.execution.definition or {}
    pattern = definition.get("pattern") or Pattern.SEQUENTIAL
    config = definition.get("config") or {}
    profiles = _orchestration_profiles(ctx)
    text = _input_text(ctx.execution.inputs or {})
    root = ctx.recorder.span_start(SpanKind.TASK, f"orchestration {definition.get('name', '')} ({pattern})",
                                   pattern=pattern)
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
    prompt = _task_prompt(specs.interpolate(d.get("description", ""), inputs),
                          specs.interpolate(d.get("expected_output", ""), inputs),
                          [("inputs", json.dumps(inputs, default=str))] if inputs else None)
    return ctx.task_step(name=d.get("name") or "task", profile=profile, prompt=prompt, parent=None,
                         resume=_paused_step(ctx)).text


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


#: workflow step types other apps add (``definition.type`` → runner); agent steps have none
STEP_RUNNERS: dict[str, Runner] = {}


def register_step_runner(step_type: str):
    """Other apps run a workflow step type of theirs (the knowledge app registers ``knowledge``)."""
    def decorator(fn: Runner) -> Runner:
        STEP_RUNNERS[step_type] = fn
        return fn
    return decorator


@register_runner(ExecutionKind.WORKFLOW_STEP)
def run_workflow_step(ctx: RunContext):
    step_runner = STEP_RUNNERS.get((ctx.execution.definition or {}).get("type"))
    return step_runner(ctx) if step_runner else run_agent_command(ctx)


@register_runner(ExecutionKind.AGENT_COMMAND)
def run_agent_command(ctx: RunContext):
    profile = _single_agent(ctx)
    d = ctx.execution.definition or {}
    return ctx.task_step(name=str(d.get("action") or d.get("command") or "command"), profile=profile,
                         prompt=_command_prompt(d), parent=None, resume=_paused_step(ctx)).text


@register_runner(ExecutionKind.AGENT_EXECUTE)
def run_agent_execute(ctx: RunContext):
    """Seed 002: AgentCommand → AgentResponse."""
    profile = _single_agent(ctx)
    d = ctx.execution.definition or {}
    started = time.monotonic()
    step = ctx.task_step(name=str(d.get("action") or "execute"), profile=profile, prompt=_command_prompt(d), parent=None,
                         resume=_paused_step(ctx))
    resources = [ctx.resolve(profile.model).requested] + list(profile.tools)
    return {"success": True, "data": step.text, "error": None,
            "metadata": {"execution_time": round((time.monotonic() - started) * 1000, 2),
                         "resources_used": resources, "next_suggested_actions": [], "workflow_triggered": []}}


@register_runner(ExecutionKind.AGENT_PROMPT)
def run_agent_prompt(ctx: RunContext):
    profile = _single_agent(ctx)
    d = ctx.execution.definition or {}
    return ctx.agent_step(profile=profile, prompt=d.get("prompt", ""), parent=None, resume=_paused_step(ctx)).text


@register_runner(ExecutionKind.AGENT_TEST)
def run_agent_test(ctx: RunContext):
    profile = _single_agent(ctx)
    started = time.monotonic()
    step = ctx.agent_step(profile=profile, prompt=(ctx.execution.definition or {}).get("prompt", ""), parent=None,
                          resume=_paused_step(ctx))
    return {"output": step.text, "tokens": step.tokens_in + step.tokens_out, "cost": str(step.cost),
            "latency_ms": round((time.monotonic() - started) * 1000, 2)}


# --- streams to HTTP (SSE) and sockets ---------------------------------------------------------

STREAM_MAXLEN = 20000
STREAM_TTL = 3600


def stream_push(key: str, fields: dict) -> None:
    from django_redis import get_redis_connection

    try:
        redis = get_redis_connection("default")
        pipe = redis.pipeline(transaction=False)
        pipe.xadd(key, fields, maxlen=STREAM_MAXLEN, approximate=True)
        pipe.expire(key, STREAM_TTL)
        pipe.execute()
    except Exception:
        logger.warning("stream push to %s failed", key, exc_info=True)


def stream_key(stream_id: str) -> str:
    return f"{settings.KAI_REDIS_PREFIX}:stream:{stream_id}"


# --- claiming and running one execution --------------------------------------------------------

def concurrency_cap(organization) -> int:
    override = (organization.settings or {}).get("max_concurrent_runs")
    if override:
        return int(override)
    return PLAN_CONCURRENCY.get(organization.plan, PLAN_CONCURRENCY["standard"])


def claim(execution: Execution, *, worker: str, start: bool = False) -> str:
    """PENDING → PREPARING (→ RUNNING with ``start``) unless the organization is at its cap (a
    top-level run only). Returns "claimed", "over_cap" or "lost"."""
    cap = None
    if execution.parent_id is None:
        cap = (execution.organization_id, concurrency_cap(execution.organization))
    outcome, _ = execution_claim(execution_id=execution.pk, worker=worker, attempts=execution.attempts + 1,
                                 start=start, cap=cap)
    return outcome


def run(execution_id, *, worker: str) -> str:
    """Run one execution to its end. Idempotent: a run that ended or that another worker claimed
    returns at once. Returns what happened (for logs and tests). Every log line of the run names
    its organization and execution."""
    from kai_platform.logging import log_context

    execution = (Execution.objects.select_related("organization", "agent")  # created_by: only tools need it
                 .filter(pk=execution_id).first())
    if execution is None:
        return "missing"
    with log_context(organization=execution.organization_id, execution=execution.pk):
        return _run(execution, worker=worker)


def _run(execution: Execution, *, worker: str) -> str:
    if execution.status != S.PENDING:
        return f"skipped ({execution.status})"
    if execution.cancel_requested:
        execution_transition(execution_id=execution.pk, to=S.CANCELLED, reason="cancelled before it started")
        return "cancelled"
    runner = RUNNERS.get(execution.kind)
    # PENDING → PREPARING → RUNNING in one statement (a kind with no runner stops at PREPARING and fails)
    outcome = claim(execution, worker=worker, start=runner is not None)
    if outcome == "over_cap":
        delay = round(1.0 + random.random() * 2.0, 2)
        # still waiting, not forgotten (``requeue_forgotten`` leaves it alone)
        Execution.objects.filter(pk=execution.pk, status=S.PENDING).update(updated_at=timezone.now())
        execution_enqueue(execution_id=execution.pk, priority=execution.priority, countdown=delay)
        return "over_cap"
    if outcome != "claimed":
        # a run whose cancel was requested is never claimed: it ends here, never having started
        if (Execution.objects.filter(pk=execution.pk, status=S.PENDING, cancel_requested=True).exists()
                and execution_transition(execution_id=execution.pk, to=S.CANCELLED,
                                         reason="cancelled before it started", only_from={S.PENDING})):
            return "cancelled"
        return "lost"
    connection.close()  # back to the pool while the runner works
    handle = registry.add(execution.pk)
    ctx = RunContext(execution, handle)
    _restore_usage_keys(ctx)
    started = time.monotonic()
    status, error = S.FAILED, ""
    try:
        if runner is None:
            raise RunFailed(f"no runner is installed for runs of kind {execution.kind!r}")
        from apps.agents.tools.base import with_citations

        result = with_citations(runner(ctx), ctx.citations)
        ctx.recorder.log("completed", tokens=ctx.recorder.total_tokens_in + ctx.recorder.total_tokens_out,
                         cost=str(ctx.recorder.total_cost))
        status = S.COMPLETED
        with transaction.atomic():  # the last batch and the end: one transaction, the event last
            ctx.recorder.flush()
            execution_transition(execution_id=execution.pk, to=S.COMPLETED, reason="completed", result=result,
                                 error="")
    except AwaitingApproval as exc:
        ctx.recorder.log(f"waiting for approval: {exc}", **{k: v for k, v in exc.request.items()
                                                              if k in ("source", "step_id")})
        status = _park(ctx, exc)
    except Cancelled as exc:
        status, error = S.CANCELLED, str(exc) or "cancelled"
        ctx.recorder.log(f"cancelled: {error}", level="warning")
        _end(ctx, S.CANCELLED, error)
    except RunFailed as exc:
        error = str(exc)
        ctx.recorder.log(f"failed: {error}", level="error")
        _end(ctx, S.FAILED, error)
    except Exception as exc:
        logger.exception("execution %s crashed", execution.pk)
        error = f"internal error: {type(exc).__name__}: {exc}"
        ctx.recorder.log(f"failed: {error}", level="error")
        _end(ctx, S.FAILED, error)
    finally:
        registry.remove(handle)
        if ctx._stream_key and status != S.WAITING_FOR_APPROVAL:
            stream_push(ctx._stream_key, {"done": "1", "status": str(status), "error": error[:1000]})
        _record_agent_stats(execution, time.monotonic() - started, error)
        connection.close()
    return str(status).lower()


def _restore_usage_keys(ctx: RunContext) -> None:
    from datetime import date

    for agent, model, day in (ctx.execution.checkpoint or {}).get("usage_keys") or []:
        ctx.recorder._counted_usage_keys.add((agent, model, date.fromisoformat(day)))


def _park(ctx: RunContext, pause: AwaitingApproval) -> str:
    """RUNNING → WAITING_FOR_APPROVAL with the checkpoint, and the approval asked, in one
    transaction; the worker then lets go of the run (a new task resumes it once answered).
    Returns the status the run is left in."""
    from apps.approvals.services import approval_request_for_execution

    ctx.recorder.flush()
    # the usage rollup counted this run once per agent/model/day already; the resumed run must not again
    pause.checkpoint["usage_keys"] = [[agent, model, day.isoformat()]
                                      for agent, model, day in ctx.recorder._counted_usage_keys]
    try:
        if approval_request_for_execution(execution=ctx.execution, request=pause.request,
                                          checkpoint=pause.checkpoint):
            return S.WAITING_FOR_APPROVAL
    except Exception as exc:
        logger.exception("could not park execution %s for approval", ctx.execution.pk)
        _end(ctx, S.FAILED, f"could not ask for approval: {exc}")
        return S.FAILED
    _end(ctx, S.CANCELLED, "cancelled before the approval was asked")  # its cancel was requested meanwhile
    return S.CANCELLED


def _end(ctx: RunContext, to: str, reason: str) -> None:
    try:
        with transaction.atomic():  # the last batch and the end in one transaction, the event last
            ctx.recorder.flush()
            execution_transition(execution_id=ctx.execution.pk, to=to, reason=reason,
                                 error=reason if to == S.FAILED else "")
        return
    except Exception:
        logger.exception("final flush or end of %s failed; ending it without its last batch", ctx.execution.pk)
    execution_transition(execution_id=ctx.execution.pk, to=to, reason=reason, error=reason if to == S.FAILED else "")


def _record_agent_stats(execution: Execution, seconds: float, error: str) -> None:
    if execution.agent_id is None:
        return
    try:
        from apps.agents.services import agent_record_execution

        agent_record_execution(agent=execution.agent, seconds=seconds, error=error)
    except Exception:
        logger.warning("could not record the run in the agent's counters", exc_info=True)


# --- the reaper --------------------------------------------------------------------------------

def reap_stale(*, now=None, limit: int = 500) -> dict:
    """Runs whose heartbeat is older than ``KAI_RUN_STALE_SECONDS``: FAILED "worker lost", or back to
    PENDING (and queued) while attempts remain; a cancel-requested one ends CANCELLED."""
    from datetime import timedelta

    now = now or timezone.now()
    cutoff = now - timedelta(seconds=stale_seconds())
    stale = list(Execution.objects.filter(status__in=[S.PREPARING, S.RUNNING], heartbeat_at__lt=cutoff)
                 .values("pk", "attempts", "max_attempts", "cancel_requested", "worker", "priority",
                         "heartbeat_at")[:limit])
    counts = {"failed": 0, "requeued": 0, "cancelled": 0}
    for row in stale:
        age = int((now - row["heartbeat_at"]).total_seconds())
        lost = f"worker lost: no heartbeat from {row['worker'] or 'its worker'} for {age} s"
        if row["cancel_requested"]:
            if execution_transition(execution_id=row["pk"], to=S.CANCELLED, reason=f"cancelled ({lost})",
                                    only_from={S.PREPARING, S.RUNNING}):
                counts["cancelled"] += 1
        elif row["attempts"] < row["max_attempts"]:
            with transaction.atomic():
                if execution_transition(execution_id=row["pk"], to=S.PENDING, worker="",
                                        reason=f"{lost}; requeued (attempt {row['attempts'] + 1} of "
                                               f"{row['max_attempts']})"):
                    transaction.on_commit(partial_enqueue(row["pk"], row["priority"]))
                    counts["requeued"] += 1
        elif execution_transition(execution_id=row["pk"], to=S.FAILED, reason=lost, error=lost,
                                  only_from={S.PREPARING, S.RUNNING}):
            counts["failed"] += 1
    return counts


def partial_enqueue(execution_id, priority):
    return lambda: execution_enqueue(execution_id=execution_id, priority=priority)


def requeue_forgotten(*, older_than_seconds: int = 300, limit: int = 200) -> int:
    """PENDING runs whose queue message was lost with a killed worker's prefetch: queue them again
    (claiming is conditional, so a duplicate message is harmless)."""
    from datetime import timedelta

    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    rows = list(Execution.objects.filter(status=S.PENDING, updated_at__lt=cutoff, cancel_requested=False)
                .values_list("pk", "priority")[:limit])
    for pk, priority in rows:
        Execution.objects.filter(pk=pk, status=S.PENDING).update(updated_at=timezone.now())
        execution_enqueue(execution_id=pk, priority=priority)
    return len(rows)
