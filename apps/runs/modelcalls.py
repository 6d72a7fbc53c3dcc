"""One model call of a run (``RunContext.llm_call``): answered from the run's step log when an
earlier attempt made it; else the budgets and the provider's circuit breaker are checked, the
answer streamed (tokens counted and streamed to clients as they come, the call ended on cancel),
its span, usage and step recorded."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db import connection

from apps.runs import llm as llm_layer
from apps.runs.models import SpanKind, StepKind
from apps.runs.recorder import Span
from apps.runs.steps import AgentProfile, Cancelled, RunFailed
from kai_platform import telemetry
from kai_platform.db.nul import without_nul
from kai_platform.llm.base import LLMError, ToolCall, count_tokens, messages_tokens
from kai_platform.llm.pricing import cost_usd

if TYPE_CHECKING:
    from apps.runs.checkpoints import StepLog
    from apps.runs.inflight import RunHandle
    from apps.runs.recorder import RunRecorder
    from kai_platform.llm.base import Usage


@dataclass
class _Call:
    """One model call while it streams: its span, what came back, and the tokens counted so far."""

    span: Span
    estimated_in: int
    parts: list[str] = field(default_factory=list)
    calls: list = field(default_factory=list)
    usage: Usage | None = None
    counted_out: int = 0

    def tokens(self) -> tuple[int, int]:
        """(in, out): the provider's counts when it gave them, else the estimate and the count."""
        usage = self.usage
        tokens_in = usage.input_tokens if usage and usage.input_tokens else self.estimated_in
        tokens_out = (
            usage.output_tokens if usage and (usage.output_tokens or not self.counted_out) else self.counted_out
        )
        return tokens_in, tokens_out


def _arguments_without_nul(tool_call: ToolCall) -> ToolCall:
    arguments = without_nul(tool_call.arguments)
    return tool_call if arguments is tool_call.arguments else replace(tool_call, arguments=arguments)


class ModelCalls:
    """The model calls of ``RunContext`` (its ``resolve``, ``steps``, ``recorder`` and ``handle``)."""

    if TYPE_CHECKING:  # what RunContext gives the calls
        organization: Any
        handle: RunHandle
        recorder: RunRecorder
        steps: StepLog
        params: dict[str, Any]

        def resolve(self, model_name: str) -> llm_layer.ResolvedModel: ...
        def check_cancel(self) -> None: ...
        def stream_chunk(self, text: str, **extra: Any) -> None: ...

    def llm_call(
        self,
        *,
        profile: AgentProfile,
        messages: list[dict],
        tools: list[dict] | None,
        parent: Span | None,
        params: dict | None = None,
    ):
        """One model call: answered from the step log when an earlier attempt made it, else checked
        (budgets, circuit breaker), streamed, counted and logged as a step. Returns (text, tool
        calls, tokens in, tokens out, cost)."""
        resolved = self.resolve(profile.model)
        self.check_cancel()
        params = {**self.params, **(params or {})}
        key = self.steps.key(
            StepKind.LLM,
            {"model": resolved.requested, "served_by": resolved.model, "messages": messages, "tools": tools or None}
            | {"params": params},
        )
        done = self.steps.answer(key)
        if done is not None:
            return self._llm_from_log(done, resolved, profile, parent)
        failures = self._llm_admit(resolved, profile)
        span = self._llm_span(
            resolved, profile, parent, content={"prompt": messages} if telemetry.capture_content() else None
        )
        if not connection.in_atomic_block:
            connection.close()  # never hold a connection while the provider thinks
        call = _Call(span=span, estimated_in=messages_tokens(messages))
        self._llm_stream(call, resolved, profile, messages, tools, params)
        llm_layer.breaker_success(resolved.provider_key, failures)
        tokens_in, tokens_out = call.tokens()
        self.recorder.tokens(tokens_out=tokens_out - call.counted_out)  # the provider's count is the truth
        text = "".join(call.parts)
        if telemetry.capture_content():
            span.content["completion"] = text
        cost = self._finish_llm_span(
            span, resolved, profile, tokens_in, tokens_out, counted=True, tool_calls=[c.name for c in call.calls]
        )
        answer = {"text": text, "calls": [c.as_dict() for c in call.calls], "tokens_in": tokens_in}
        self.steps.record(key, StepKind.LLM, answer | {"tokens_out": tokens_out, "cost": str(cost)}, self.recorder)
        return text, call.calls, tokens_in, tokens_out, cost

    def _llm_admit(self, resolved, profile: AgentProfile) -> int | None:
        """Before a model call: the budgets (when any is set) and the provider's circuit breaker;
        returns the breaker's failure count (``breaker_success`` needs it)."""
        if llm_layer.budgets_configured(organization=self.organization, resolved=resolved, agent=profile.agent):
            self.recorder.flush()  # the check must see what this run already spent
            try:
                llm_layer.check_budgets(organization=self.organization, resolved=resolved, agent=profile.agent)
            except llm_layer.BudgetExceeded as exc:
                raise RunFailed(str(exc), type="budget_exceeded")
        try:
            return llm_layer.breaker_allow(resolved.provider_key)
        except llm_layer.CircuitOpen as exc:
            raise RunFailed(str(exc), type="circuit_open", provider=resolved.label)

    def _llm_stream(self, call: _Call, resolved, profile: AgentProfile, messages, tools, params: dict) -> None:
        """Stream the provider's answer into ``call``, counting and streaming its tokens as they come;
        a provider error or a cancel ends the span and raises (the client ends its call on cancel)."""
        stream = resolved.client.stream(messages, tools or None, {**params, "cancel": self.handle.cancel_event})
        cancelled = False
        try:
            for chunk in stream:
                if self.handle.cancel_event.is_set():
                    cancelled = True
                    break
                if chunk.kind == "text" and chunk.text:
                    text = without_nul(chunk.text)  # stored, streamed and answered as one text
                    call.parts.append(text)
                    n = count_tokens(text)
                    call.counted_out += n
                    self.recorder.tokens(tokens_out=n)
                    self.stream_chunk(text)
                    self.recorder.maybe_flush()
                elif chunk.kind == "tool_call" and chunk.tool_call:
                    call.calls.append(_arguments_without_nul(chunk.tool_call))
                elif chunk.kind == "usage" and chunk.usage:
                    call.usage = chunk.usage
        except LLMError as exc:
            if exc.kind in llm_layer.BREAKER_KINDS:
                llm_layer.breaker_failure(resolved.provider_key)
            error = f"{exc.kind}: {exc.message}"
            self._finish_llm_span(
                call.span, resolved, profile, call.estimated_in, call.counted_out, status="error", error=error
            )
            raise RunFailed(
                f"LLM call to {resolved.requested!r} failed ({exc.kind}): {exc.message}",
                type=f"provider_{exc.kind}",
                provider=resolved.label,
                timeout=getattr(resolved.client, "timeout", None),
            )
        finally:
            close = getattr(stream, "close", None)
            if close:
                close()
        if cancelled or self.handle.cancel_event.is_set():  # the client may end its call early on cancel
            self._finish_llm_span(call.span, resolved, profile, call.estimated_in, call.counted_out, status="cancelled")
            raise Cancelled(self.handle.cancel_reason or "cancelled")

    def _llm_span(self, resolved, profile: AgentProfile, parent: Span | None, content: dict | None = None):
        """The span of one model call (made now, or taken from an earlier attempt's log)."""
        return self.recorder.span_start(
            SpanKind.LLM,
            resolved.model,
            parent,
            agent_id=profile.agent_id,
            model=resolved.model,
            provider=resolved.provider_type,
            requested_model=resolved.requested,
            content=content,
        )

    def _llm_from_log(self, done: dict, resolved, profile: AgentProfile, parent: Span | None):
        """A model call an earlier attempt completed: its answer, with no provider call and
        nothing spent again (the earlier attempt counted it)."""
        span = self._llm_span(resolved, profile, parent)
        calls = [ToolCall(c["id"], c["name"], dict(c.get("arguments") or {})) for c in done.get("calls") or []]
        self.recorder.span_end(span, from_checkpoint=True, tool_calls=[c.name for c in calls])
        return (
            done.get("text") or "",
            calls,
            int(done.get("tokens_in") or 0),
            int(done.get("tokens_out") or 0),
            Decimal(done.get("cost") or 0),
        )

    def _finish_llm_span(
        self,
        span: Span,
        resolved,
        profile: AgentProfile,
        tokens_in: int,
        tokens_out: int,
        *,
        status: str = "ok",
        counted: bool = False,
        **attributes,
    ) -> Decimal:
        cost = cost_usd(resolved.pricing_model, tokens_in, tokens_out, resolved.pricing_override)
        span.tokens_in, span.tokens_out, span.cost = tokens_in, tokens_out, cost
        self.recorder.tokens(tokens_in=tokens_in, cost=cost)
        self.recorder.span_end(span, status=status, **attributes)
        self.recorder.usage(
            agent_id=profile.agent_id,
            agent_name=profile.name,
            model=resolved.requested,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost=cost,
            provider=resolved.provider,
        )
        return cost
