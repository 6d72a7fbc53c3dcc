"""The one LLM interface: ``stream(messages, tools, params)`` yields chunks (text, tool calls)
and ends with a usage chunk. ``complete`` gathers a stream into a ``Completion``.

Messages are OpenAI-style dicts: ``{"role": "system"|"user"|"assistant"|"tool", "content": str}``,
an assistant message may carry ``tool_calls`` ([{id, name, arguments}]) and a tool message its
``tool_call_id``. Tools are ``{"name", "description", "parameters": <JSON schema>}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kai_platform.llm.netguard import AllowList
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")


def count_tokens(text: str) -> int:
    """A deterministic token estimate (words and punctuation), used by the builtin provider and
    when a provider does not report usage."""
    return len(_TOKEN_RE.findall(text or ""))


def messages_tokens(messages: list[dict[str, Any]]) -> int:
    return sum(count_tokens(str(m.get("content") or "")) + 1 for m in messages)


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


@dataclass
class Chunk:
    kind: str  # "text" | "tool_call" | "usage"
    text: str = ""
    tool_call: ToolCall | None = None
    usage: Usage | None = None


@dataclass
class Completion:
    text: str
    model: str
    provider_type: str
    usage: Usage
    latency_ms: float
    tool_calls: list[ToolCall] = field(default_factory=list)


class LLMError(Exception):
    """A provider call failed. ``kind`` says how: timeout, connection, auth, blocked, bad_request, provider."""

    kind = "provider"

    def __init__(self, message: str, *, provider: str = ""):
        super().__init__(message)
        self.message = message
        self.provider = provider


class LLMTimeout(LLMError):
    kind = "timeout"


class LLMConnectionError(LLMError):
    kind = "connection"


class LLMAuthError(LLMError):
    kind = "auth"


class LLMBadRequest(LLMError):
    kind = "bad_request"


class LLMBlockedAddress(LLMError):
    kind = "blocked"


class LLMClient(ABC):
    """A configured client for one model of one provider. Keys are passed in and kept on the
    object for the call only; nothing is read from or written to ``os.environ``."""

    provider_type = ""

    def __init__(
        self,
        *,
        model: str,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 60.0,
        allowlist: AllowList | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.api_key = api_key
        self.base_url = base_url or None
        self.timeout = float(timeout)
        self.allowlist = allowlist
        self.options = options or {}

    @abstractmethod
    def stream(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        params: dict[str, Any] | None = None,
    ) -> Iterator[Chunk]:
        """Yield text/tool_call chunks, then exactly one usage chunk. ``params["cancel"]`` (a
        ``threading.Event``, set by the run engine when the run is cancelled) ends the call early:
        a client stops at once where it can (the builtin one also mid-wait), or at its next chunk."""

    def complete(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        params: dict[str, Any] | None = None,
    ) -> Completion:
        started = time.perf_counter()
        parts: list[str] = []
        tool_calls: list[ToolCall] = []
        usage = Usage()
        for chunk in self.stream(messages, tools, params):
            if chunk.kind == "text":
                parts.append(chunk.text)
            elif chunk.kind == "tool_call" and chunk.tool_call:
                tool_calls.append(chunk.tool_call)
            elif chunk.kind == "usage" and chunk.usage:
                usage = chunk.usage
        return Completion(
            text="".join(parts),
            model=self.model,
            provider_type=self.provider_type,
            usage=usage,
            latency_ms=round((time.perf_counter() - started) * 1000, 2),
            tool_calls=tool_calls,
        )

    def validate(self) -> Completion:
        """One minimal real call, to prove the endpoint, key and model work."""
        return self.complete([{"role": "user", "content": "ping"}], params={"max_tokens": 1})


def error_chain(exc: BaseException | None) -> Iterator[BaseException]:
    """The exception and its causes/contexts, outermost first."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__
