"""Anthropic Messages API through the ``anthropic`` SDK, streamed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import anthropic
import json
import time
from collections.abc import Iterator

from kai_platform.llm import structured
from kai_platform.llm.base import (
    Chunk,
    LLMAuthError,
    LLMBadRequest,
    LLMBlockedAddress,
    LLMClient,
    LLMConnectionError,
    LLMError,
    LLMTimeout,
    ToolCall,
    Usage,
    error_chain,
)
from kai_platform.llm.cancel import on_cancel
from kai_platform.llm.netguard import Aborter, BlockedAddress, check_url, guarded_http_client

DEFAULT_BASE_URL = "https://api.anthropic.com"


def map_sdk_error(exc: BaseException, timeout: float) -> LLMError:
    # deferred: heavy — the Anthropic SDK, loaded on first use to keep process start fast
    import anthropic

    for inner in error_chain(exc):
        if isinstance(inner, BlockedAddress):
            return LLMBlockedAddress(str(inner), provider="anthropic")
    if isinstance(exc, anthropic.APITimeoutError):
        return LLMTimeout(f"anthropic did not answer within {timeout:g} s", provider="anthropic")
    if isinstance(exc, anthropic.APIConnectionError):
        return LLMConnectionError(f"cannot reach anthropic: {exc.__cause__ or exc}", provider="anthropic")
    if isinstance(exc, (anthropic.AuthenticationError, anthropic.PermissionDeniedError)):
        return LLMAuthError(f"anthropic rejected the API key ({exc.status_code})", provider="anthropic")
    if isinstance(exc, (anthropic.BadRequestError, anthropic.NotFoundError, anthropic.UnprocessableEntityError)):
        return LLMBadRequest(
            f"anthropic refused the request ({exc.status_code}): {exc.message}"[:400], provider="anthropic"
        )
    if isinstance(exc, anthropic.APIStatusError):
        return LLMError(f"anthropic answered {exc.status_code}: {exc.message}"[:400], provider="anthropic")
    return LLMError(f"anthropic call failed: {type(exc).__name__}: {exc}", provider="anthropic")


def to_anthropic(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    system = "\n\n".join(str(m.get("content") or "") for m in messages if m.get("role") == "system")
    out: list[dict[str, Any]] = []
    for m in messages:
        role = m.get("role")
        if role == "system":
            continue
        if role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": m.get("tool_call_id"),
                "content": str(m.get("content") or ""),
            }
            if out and out[-1]["role"] == "user" and isinstance(out[-1]["content"], list):
                out[-1]["content"].append(block)
            else:
                out.append({"role": "user", "content": [block]})
        elif role == "assistant" and m.get("tool_calls"):
            blocks = [{"type": "text", "text": m["content"]}] if m.get("content") else []
            blocks += [
                {"type": "tool_use", "id": c["id"], "name": c["name"], "input": c.get("arguments") or {}}
                for c in m["tool_calls"]
            ]
            out.append({"role": "assistant", "content": blocks})
        else:
            out.append({"role": "assistant" if role == "assistant" else "user", "content": str(m.get("content") or "")})
    return system, out


class AnthropicClient(LLMClient):
    provider_type = "anthropic"

    def _sdk_client(self, aborter: Aborter | None = None) -> anthropic.Anthropic:
        # deferred: heavy — the Anthropic SDK, loaded on first use to keep process start fast
        import anthropic

        endpoint = self.base_url or DEFAULT_BASE_URL
        try:
            check_url(endpoint, self.allowlist)
        except BlockedAddress as exc:
            raise LLMBlockedAddress(str(exc), provider="anthropic") from exc
        return anthropic.Anthropic(
            api_key=self.api_key or "unused",
            base_url=endpoint,
            timeout=self.timeout,
            max_retries=0,
            http_client=guarded_http_client(self.allowlist, timeout=self.timeout, aborter=aborter),
        )

    def _request(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, params: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The streamed Messages request for ``messages`` and ``tools``, and the structured-output
        format it asks for (None: free text)."""
        system, converted = to_anthropic(messages)
        kwargs = {
            "model": self.model,
            "messages": converted,
            "max_tokens": int(params.get("max_tokens") or 1024),
            "stream": True,
        }
        if system:
            kwargs["system"] = system
        for key in ("temperature", "top_p"):
            if params.get(key) is not None:
                kwargs[key] = params[key]
        if params.get("stop"):
            kwargs["stop_sequences"] = params["stop"] if isinstance(params["stop"], list) else [params["stop"]]
        if tools:
            kwargs["tools"] = [
                {
                    "name": t["name"],
                    "description": t.get("description", ""),
                    "input_schema": t.get("parameters") or {"type": "object", "properties": {}},
                }
                for t in tools
            ]
        fmt = structured.response_format(params)
        if fmt is not None:  # a forced call of the answer tool (any tool when the agent has its own)
            kwargs["tools"] = [*(kwargs.get("tools") or []), structured.anthropic_answer_tool(fmt)]  # type: ignore[misc]
            kwargs["tool_choice"] = {"type": "any"} if tools else {"type": "tool", "name": structured.ANSWER_TOOL}
        return kwargs, fmt

    def stream(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        params: dict[str, Any] | None = None,
    ) -> Iterator[Chunk]:
        params = {**self.options, **(params or {})}
        kwargs, fmt = self._request(messages, tools, params)
        cancel = params.get("cancel")
        aborter = Aborter()
        client = self._sdk_client(aborter)
        deadline = time.monotonic() + self.timeout
        input_tokens = output_tokens = 0
        blocks: dict[int, dict[str, Any]] = {}
        try:
            # a cancel shuts the call's socket down: it ends now, even before the first byte
            with client, on_cancel(cancel, aborter.abort):
                for event in client.messages.create(**kwargs):
                    if cancel is not None and cancel.is_set():
                        return
                    if time.monotonic() > deadline:
                        raise LLMTimeout(f"anthropic did not finish within {self.timeout:g} s", provider="anthropic")
                    kind = event.type
                    if kind == "message_start":
                        input_tokens = event.message.usage.input_tokens or 0
                        output_tokens = event.message.usage.output_tokens or 0
                    elif kind == "content_block_start" and event.content_block.type == "tool_use":
                        blocks[event.index] = {
                            "id": event.content_block.id,
                            "name": event.content_block.name,
                            "json": "",
                        }
                    elif kind == "content_block_delta":
                        if event.delta.type == "text_delta":
                            yield Chunk(kind="text", text=event.delta.text)
                        elif event.delta.type == "input_json_delta" and event.index in blocks:
                            blocks[event.index]["json"] += event.delta.partial_json
                    elif kind == "content_block_stop" and event.index in blocks:
                        block = blocks.pop(event.index)
                        arguments = json.loads(block["json"]) if block["json"] else {}
                        if fmt is not None and block["name"] == structured.ANSWER_TOOL:
                            yield Chunk(kind="text", text=structured.anthropic_answer(fmt, arguments))
                        else:
                            yield Chunk(kind="tool_call", tool_call=ToolCall(block["id"], block["name"], arguments))
                    elif kind == "message_delta" and getattr(event, "usage", None):
                        output_tokens = event.usage.output_tokens or output_tokens
        except LLMError:
            raise
        except Exception as exc:
            if aborter.aborted:  # ended by its cancel: no error, no usage (the caller counts what it saw)
                return
            raise map_sdk_error(exc, self.timeout) from exc
        yield Chunk(kind="usage", usage=Usage(input_tokens, output_tokens))
