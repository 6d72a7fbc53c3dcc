"""The builtin offline provider: deterministic text, word-by-word streaming, token usage and
tool-call simulation, so everything runs (and tests pass) without a network.

Reply: ``"Builtin reply to: <last user message>"`` (cut to ``max_tokens`` words when given).
After a tool result: ``"Tool <name> returned: <content>"``.
Tool calls: when tools are offered and the last user message has a line
``/tool <name> <json arguments>``, the reply is that tool call instead of text; ``params``
may also name calls directly: ``{"tool_calls": [{"name": …, "arguments": {…}}]}``.
Structured answers: with ``params["response_format"]`` (``kai_platform.llm.structured``) the reply
is a deterministic JSON instance of the schema.
Load modelling: ``latency_ms`` (before the first token) and ``tokens_per_s`` (pace of the rest).
Cancel: with ``params["cancel"]`` (a ``threading.Event``) set, the call ends at once, mid-wait too.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

from kai_platform.llm import structured
from kai_platform.llm.base import (
    Chunk,
    Completion,
    LLMBadRequest,
    LLMClient,
    ToolCall,
    Usage,
    count_tokens,
    messages_tokens,
)

_DIRECTIVE = re.compile(r"^/tool\s+([A-Za-z0-9_.\-]+)\s*(.*)$", re.M)


def _call_id(seed: str) -> str:
    return "call_" + hashlib.sha256(seed.encode()).hexdigest()[:16]


class BuiltinClient(LLMClient):
    provider_type = "builtin"

    def _planned_tool_calls(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, params: dict[str, Any]
    ) -> list[ToolCall]:
        if messages and messages[-1].get("role") == "tool":
            return []
        offered = {t["name"] for t in tools or []}
        planned = []
        for index, spec in enumerate(params.get("tool_calls") or []):
            planned.append(
                ToolCall(_call_id(f"{index}:{spec['name']}"), spec["name"], dict(spec.get("arguments") or {}))
            )
        last_user = next((m for m in reversed(messages) if m.get("role") == "user"), None)
        if not planned and offered and last_user:
            for index, match in enumerate(_DIRECTIVE.finditer(str(last_user.get("content") or ""))):
                name, raw_args = match.group(1), match.group(2).strip()
                try:
                    arguments = json.loads(raw_args) if raw_args else {}
                except json.JSONDecodeError as exc:
                    raise LLMBadRequest(f"tool arguments for {name!r} are not valid JSON: {exc}", provider="builtin")
                planned.append(ToolCall(_call_id(f"{index}:{name}:{raw_args}"), name, arguments))
        unknown = [c.name for c in planned if offered and c.name not in offered]
        if unknown:
            raise LLMBadRequest(f"tool {unknown[0]!r} was not offered to the model", provider="builtin")
        return planned

    def _reply(self, messages: list[dict[str, Any]]) -> str:
        last = messages[-1] if messages else {"role": "user", "content": ""}
        if last.get("role") == "tool":
            name = last.get("name") or "tool"
            return f"Tool {name} returned: {last.get('content')}"
        last_user = next((m for m in reversed(messages) if m.get("role") == "user"), None)
        text = str(last_user.get("content") or "") if last_user else ""
        return f"Builtin reply to: {text}".strip()

    def stream(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        params: dict[str, Any] | None = None,
    ) -> Iterator[Chunk]:
        params = {**self.options, **(params or {})}
        latency_ms = float(params.get("latency_ms") or 0)
        tokens_per_s = float(params.get("tokens_per_s") or 0)
        cancel = params.get("cancel") or threading.Event()
        deadline = time.monotonic() + self.timeout
        if latency_ms and cancel.wait(min(latency_ms / 1000, max(0.0, deadline - time.monotonic()))):
            return
        input_tokens = messages_tokens(messages)
        calls = self._planned_tool_calls(messages, tools, params)
        if calls:
            for call in calls:
                yield Chunk(kind="tool_call", tool_call=call)
            out = sum(count_tokens(json.dumps(c.arguments)) + 1 for c in calls)
            yield Chunk(kind="usage", usage=Usage(input_tokens, out))
            return
        fmt = structured.response_format(params)
        if fmt is not None:
            reply = json.dumps(structured.instance_of(fmt["schema"]), ensure_ascii=False)
        else:
            reply = self._reply(messages)
        words = reply.split(" ")
        max_tokens = params.get("max_tokens")
        if max_tokens and fmt is None:
            words = words[: max(1, int(max_tokens))]
        emitted = 0
        for index, word in enumerate(words):
            if tokens_per_s and cancel.wait(1.0 / tokens_per_s):
                return
            piece = word if index == len(words) - 1 else word + " "
            emitted += count_tokens(piece)
            yield Chunk(kind="text", text=piece)
        yield Chunk(kind="usage", usage=Usage(input_tokens, emitted))

    def validate(self) -> Completion:
        return self.complete([{"role": "user", "content": "ping"}])
