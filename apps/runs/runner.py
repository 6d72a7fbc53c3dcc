"""What a run's steps execute in (``RunContext``); ``apps.runs.lifecycle`` claims a PENDING execution,
hands it to its kind's runner and ends it COMPLETED, FAILED or CANCELLED.

Every kind of run is run by the function its app registered (``apps.runs.registry``) and is built
from one step, ``RunContext.agent_step`` (an agent answers a prompt, calling tools when the model
asks; each model call is ``apps.runs.modelcalls``'), traced as task → agent → llm/tool spans. While
runs are in flight, one thread per worker process heartbeats them all and sets a run's in-memory
cancel flag as soon as its cancel is signalled (``apps.runs.inflight``); runners check that flag
between tokens, so a cancel stops token spending at once without a query per token.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from apps.events.services import publish
from apps.runs import llm as llm_layer
from apps.runs import registry as plugins
from apps.runs.checkpoints import StepLog
from apps.runs.inflight import RunHandle
from apps.runs.modelcalls import ModelCalls
from apps.runs.models import Execution, ExecutionStatus, SpanKind, StepKind
from apps.runs.recorder import RunRecorder, Span
from apps.runs.steps import (
    LLM_PARAM_KEYS,
    MAX_TOOL_ROUNDS,
    AgentProfile,
    AwaitingApproval,
    Cancelled,
    LocalTool,
    RunFailed,
    StepOptions,
    StepResult,
    span_status,
    tool_requires_approval,
)
from apps.runs.streams import stream_push
from kai_platform.llm.base import ToolCall

logger = logging.getLogger(__name__)
S = ExecutionStatus

__all__ = [
    "LLM_PARAM_KEYS",
    "MAX_TOOL_ROUNDS",
    "AgentProfile",
    "AwaitingApproval",
    "Cancelled",
    "LocalTool",
    "RunContext",
    "RunFailed",
    "StepOptions",
    "StepResult",
    "platform_agents",
    "span_status",
    "tool_requires_approval",
]


class RunContext(ModelCalls):
    """What a kind's runner works with: the execution, its recorder, cancel state, LLM access."""

    def __init__(self, execution: Execution, handle: RunHandle):
        self.execution = execution
        self.organization = execution.organization
        self.handle = handle
        self.recorder = RunRecorder(
            execution_id=execution.pk, organization_id=execution.organization_id, trace_id=execution.trace_id
        )
        self.params = {k: v for k, v in (execution.params or {}).items() if k in LLM_PARAM_KEYS}
        self.default_model = execution.model or ""
        self._resolved: dict[str, llm_layer.ResolvedModel] = {}
        self._resolve_lock = threading.Lock()
        self.agents_executed: list[str] = []
        self._stream_key = f"{settings.KAI_REDIS_PREFIX}:stream:{execution.stream_id}" if execution.stream_id else None
        self._tools_cache: dict[str, object] = {}
        #: steps the run is expected to take (a kind's runner sets it before its steps) and done so far
        self.total_steps = 1
        self.steps_done = 0
        self._progress_lock = threading.Lock()
        self._started = time.monotonic()
        self.citations: list[dict] = []  # what tools cited (knowledge chunks): kept in the result
        #: the durable step log: completed calls of earlier attempts are answered from it
        self.steps = StepLog(execution)
        if self.steps.enabled and execution.attempts:
            # a resumed run's totals go on from what its earlier attempts spent (already counted)
            self.recorder.total_tokens_in, self.recorder.total_tokens_out = execution.tokens_in, execution.tokens_out
            self.recorder.total_cost = Decimal(execution.cost if execution.cost is not None else 0)

    def elapsed(self) -> float:
        """Seconds since the run's context was made (its work began)."""
        return time.monotonic() - self._started

    # --- cancel -----------------------------------------------------------------------------
    def check_cancel(self) -> None:
        if self.handle.cancel_event.is_set():
            raise Cancelled(self.handle.cancel_reason or "cancelled")

    def step_done(self, *, profile: AgentProfile, label: str) -> None:
        """Seed 004's ``inference_progress`` (``execution.progress``): step i of n, tokens so far."""
        with self._progress_lock:
            self.steps_done += 1
            done = self.steps_done
        if self.total_steps <= 1:
            return  # a one-step run: execution.running and execution.completed say it all
        total = max(self.total_steps, done)
        elapsed = time.monotonic() - self._started
        tokens_in, tokens_out = self.recorder.total_tokens_in, self.recorder.total_tokens_out

        try:
            with transaction.atomic():
                publish(
                    self.execution.organization_id,
                    "execution.progress",
                    {
                        "progress": round(done / total, 4),
                        "step": done,
                        "total_steps": total,
                        "stage": label or profile.role or profile.name,
                        "agent": profile.key,
                        "estimated_remaining": round(elapsed / done * (total - done), 1),
                        "tokens": tokens_in + tokens_out,
                        "tokens_in": tokens_in,
                        "tokens_out": tokens_out,
                    },
                    agent=profile.agent_id or self.execution.agent_id,
                    execution=self.execution.pk,
                    owner=self.execution.created_by_id,
                    component="runs",
                )
        except Exception:  # progress is informative: a failed insert must not fail the run
            logger.warning("could not publish the progress of run %s", self.execution.pk, exc_info=True)
        finally:
            if not connection.in_atomic_block:
                connection.close()

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
                    raise RunFailed(str(exc), type="model_unavailable")
                if resolved.note:
                    self.recorder.log(resolved.note, level="warning", model=resolved.requested)
                self._resolved[name] = resolved
            return self._resolved[name]

    # --- tools ------------------------------------------------------------------------------
    def tool_rows(self, names: list[str]) -> list:
        if not names:
            return []
        missing = [n for n in names if n not in self._tools_cache]
        if missing:
            for tool in plugins.service("tools_load")(self.organization, missing):
                self._tools_cache[tool.name] = tool
        return [self._tools_cache[n] for n in names if n in self._tools_cache]

    # --- an agent answers a prompt ----------------------------------------------------------
    def agent_step(
        self,
        *,
        profile: AgentProfile,
        prompt: str,
        parent: Span | None,
        label: str = "",
        resume: dict | None = None,
        options: StepOptions | None = None,
    ) -> StepResult:
        """``resume``: the checkpoint of this step parked on a tool call that needed approval (its
        messages, the pending calls and the decision); the conversation goes on from there."""
        options = options or StepOptions()
        self.check_cancel()
        span = self.recorder.span_start(
            SpanKind.AGENT, profile.role or profile.name, parent, agent_id=profile.agent_id, agent_key=profile.key
        )
        suffix = f" {label}" if label else ""
        self.recorder.log(
            f"{profile.role or profile.name} started{suffix}",
            agent=profile.key,
            agent_id=str(profile.agent_id) if profile.agent_id else None,
        )
        result = StepResult(text="")
        try:
            self._converse(profile, prompt, span, result, resume, options)
        except (Cancelled, RunFailed, AwaitingApproval) as exc:
            span.tokens_in, span.tokens_out, span.cost = result.tokens_in, result.tokens_out, result.cost
            self.recorder.span_end(span, status=span_status(exc), error=str(exc))
            raise
        span.tokens_in, span.tokens_out, span.cost = result.tokens_in, result.tokens_out, result.cost
        self.recorder.span_end(span, output=result.text[:4000], tool_calls=result.tool_calls)
        self.recorder.log(
            f"{profile.role or profile.name} finished{suffix}",
            agent=profile.key,
            output=result.text[:2000],
            tokens=result.tokens_in + result.tokens_out,
        )
        if profile.agent_id and str(profile.agent_id) not in self.agents_executed:
            self.agents_executed.append(str(profile.agent_id))
        self.recorder.maybe_flush()
        self.step_done(profile=profile, label=label)
        return result

    def _converse(
        self, profile: AgentProfile, prompt: str, span: Span, result: StepResult, resume, options: StepOptions
    ) -> None:
        """The step's rounds: the model answers, the tools it calls run, until it answers with no
        call (or its rounds are spent and it must answer without tools); ``result`` adds them up."""
        tool_rows = self.tool_rows(profile.tools)
        tool_specs = [
            {
                "name": t.name,
                "description": t.description or t.name,
                "parameters": t.parameters_schema or {"type": "object", "properties": {}},
            }
            for t in tool_rows
        ]
        tool_specs += [local.spec for local in options.local_tools.values()]
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": profile.system_prompt()},
            {"role": "user", "content": prompt},
        ]
        first_round = 0
        if resume:
            messages, first_round = self._resumed_messages(resume, tool_rows, profile, span, result, options)
        for _round in range(first_round, options.max_rounds + 1):
            if options.before_call:
                options.before_call()
            text, calls, tin, tout, cost = self.llm_call(
                profile=profile,
                messages=messages,
                tools=tool_specs if _round < options.max_rounds else None,
                parent=span,
                params=options.params,
            )
            result.tokens_in += tin
            result.tokens_out += tout
            result.cost += cost
            if not calls:
                result.text = text
                return
            messages.append({"role": "assistant", "content": text, "tool_calls": [c.as_dict() for c in calls]})
            self._gate_tool_calls(calls, tool_rows, profile, messages, _round)
            for call in calls:
                messages.append(self._tool_message(call, tool_rows, profile, span, result, options))

    def _resumed_messages(
        self, resume: dict, tool_rows, profile: AgentProfile, span: Span, result: StepResult, options: StepOptions
    ) -> tuple[list[dict], int]:
        """The conversation of a step parked on an approval, with the decided tool calls answered."""
        messages, first_round = list(resume["messages"]), int(resume.get("round", 0)) + 1
        decision = resume.get("decision") or {}
        for call_data in resume.get("calls") or []:
            call = ToolCall(call_data["id"], call_data["name"], dict(call_data.get("arguments") or {}))
            if decision.get("arguments") is not None and call.id == decision.get("call_id"):
                call = ToolCall(call.id, call.name, dict(decision["arguments"]))
            messages.append(self._tool_message(call, tool_rows, profile, span, result, options))
        return messages, first_round

    @staticmethod
    def _gate_tool_calls(calls, tool_rows, profile: AgentProfile, messages: list[dict], round_: int) -> None:
        """Park the step when the model calls a tool that needs a person's approval first."""
        gated = [c for c in calls if any(t.name == c.name and tool_requires_approval(t) for t in tool_rows)]
        if gated:
            call = gated[0]
            raise AwaitingApproval(
                {
                    "source": "tool_call",
                    "question": f"Allow {profile.role or profile.name} to call tool {call.name!r}?",
                    "proposed": {"tool": call.name, "arguments": call.arguments, "call_id": call.id},
                },
                {
                    "step": {
                        "messages": messages,
                        "round": round_,
                        "call_id": call.id,
                        "calls": [c.as_dict() for c in calls],
                    }
                },
            )

    def _tool_message(
        self,
        call,
        tool_rows,
        profile: AgentProfile,
        parent: Span,
        result: StepResult,
        options: StepOptions | None = None,
    ) -> dict:
        """Run one tool call the model asked for; its answer as the next message of the conversation."""
        text, ok = self._run_tool(call, tool_rows, profile, parent, (options.local_tools if options else None) or {})
        result.tool_calls += 1
        result.calls.append({"name": call.name, "arguments": call.arguments, "ok": ok, "result": text[:2000]})
        return {"role": "tool", "tool_call_id": call.id, "name": call.name, "content": text}

    def _run_tool(
        self, call, tool_rows, profile: AgentProfile, parent: Span, local_tools: dict[str, LocalTool] | None = None
    ) -> tuple[str, bool]:
        self.check_cancel()
        key = self.steps.key(StepKind.TOOL, {"name": call.name, "arguments": call.arguments})
        done = self.steps.answer(key)
        if done is not None:
            self.recorder.log(f"tool {call.name} answered from the run's checkpoint", tool=call.name)
            return done.get("text") or "", bool(done.get("ok"))
        text, ok = self._call_tool(call, tool_rows, profile, parent, local_tools)
        self.steps.record(key, StepKind.TOOL, {"text": text, "ok": ok}, self.recorder)
        return text, ok

    def _call_tool(
        self, call, tool_rows, profile: AgentProfile, parent: Span, local_tools: dict[str, LocalTool] | None
    ) -> tuple[str, bool]:
        span = self.recorder.span_start(
            SpanKind.TOOL, call.name, parent, agent_id=profile.agent_id, arguments=call.arguments
        )
        tool = next((t for t in tool_rows if t.name == call.name), None)
        local = (local_tools or {}).get(call.name) if tool is None else None
        try:
            if tool is None and local is None:
                raise RunFailed(f"tool {call.name!r} is not available to this agent")
            output = (
                local.run(call.arguments)
                if local is not None
                else plugins.service("tool_run")(
                    tool,
                    call.arguments,
                    organization=self.organization,
                    agent=profile.agent,
                    actor=self.execution.created_by,
                    citations=self.citations,
                )
            )
            text = output if isinstance(output, str) else json.dumps(output, default=str)
            self.recorder.span_end(span, output=text[:2000])
            self.recorder.log(f"tool {call.name} returned", tool=call.name, output=text[:2000])
            ok = True
        except Exception as exc:  # a tool's failure is the model's to handle, not the run's
            text, ok = f"error: {exc}", False
            self.recorder.span_end(span, status="error", error=str(exc)[:2000])
            self.recorder.log(f"tool {call.name} failed: {exc}", level="warning", tool=call.name)
        finally:
            if not connection.in_atomic_block:
                connection.close()
        return text, ok

    def task_step(
        self,
        *,
        name: str,
        profile: AgentProfile,
        prompt: str,
        parent: Span | None,
        resume: dict | None = None,
        options: StepOptions | None = None,
        **attributes,
    ) -> StepResult:
        """One task of a run; a task an earlier attempt (or the replayed run) completed is answered
        whole from the step log."""
        outer = self.steps.enter(name)
        try:
            key = (
                None
                if resume
                else self.steps.key(
                    StepKind.TASK,
                    {
                        "name": name,
                        "agent": profile.key,
                        "model": profile.model,
                        "prompt": prompt,
                        "params": options.params if options else None,
                    },
                )
            )
            done = self.steps.answer(key)
            if done is not None:
                return self._task_from_log(done, name=name, profile=profile, parent=parent, **attributes)
            span = self.recorder.span_start(SpanKind.TASK, name, parent, agent_id=profile.agent_id, **attributes)
            try:
                result = self.agent_step(
                    profile=profile, prompt=prompt, parent=span, label=f"task {name}", resume=resume, options=options
                )
            except (Cancelled, RunFailed, AwaitingApproval) as exc:
                self.recorder.span_end(span, status=span_status(exc), error=str(exc))
                raise
            span.tokens_in, span.tokens_out, span.cost = result.tokens_in, result.tokens_out, result.cost
            self.recorder.span_end(span, output=result.text[:4000])
            self.steps.record(
                key,
                StepKind.TASK,
                {
                    "text": result.text,
                    "tokens_in": result.tokens_in,
                    "tokens_out": result.tokens_out,
                    "cost": str(result.cost),
                    "tool_calls": result.tool_calls,
                    "calls": result.calls,
                },
                self.recorder,
            )
            return result
        finally:
            self.steps.leave(outer)

    def _task_from_log(
        self, done: dict, *, name: str, profile: AgentProfile, parent: Span | None, **attributes
    ) -> StepResult:
        result = StepResult(
            text=done.get("text") or "",
            tokens_in=int(done.get("tokens_in") or 0),
            tokens_out=int(done.get("tokens_out") or 0),
            cost=Decimal(done.get("cost") or 0),
            tool_calls=int(done.get("tool_calls") or 0),
            calls=list(done.get("calls") or []),
        )
        span = self.recorder.span_start(SpanKind.TASK, name, parent, agent_id=profile.agent_id, **attributes)
        self.recorder.span_end(span, output=result.text[:4000], from_checkpoint=True)
        self.recorder.log(f"task {name} answered from the run's checkpoint", task=name, agent=profile.key)
        if profile.agent_id and str(profile.agent_id) not in self.agents_executed:
            self.agents_executed.append(str(profile.agent_id))
        self.step_done(profile=profile, label=f"task {name}")
        return result


# --- runners per kind --------------------------------------------------------------------------


def platform_agents(ctx: RunContext, ids) -> dict[str, object]:
    """The organization's agents of ``ids`` (str id → agent); a missing or disabled one fails the run."""
    ids = [str(i) for i in ids if i]
    if not ids:
        return {}
    found = plugins.service("agents_load")(ctx.organization, ids)
    missing = [i for i in ids if i not in found]
    if missing:
        raise RunFailed(f"agent{'s' if len(missing) > 1 else ''} {', '.join(missing)} no longer exist")
    disabled = [a.name for a in found.values() if not a.is_active or a.status == "disabled"]
    if disabled:
        raise RunFailed(f"agent {disabled[0]!r} is disabled")
    return found
