"""OpenAI-compatible chat completions through the ``openai`` SDK: OpenAI, Azure OpenAI, Ollama,
vLLM, DeepSeek, Databricks serving endpoints — any server speaking the API at ``base_url``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import openai  # here, not at the first call: a client's first call must not spend its timeout importing

from kai_platform.llm import DEFAULT_BASE_URLS, structured
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
    count_tokens,
    error_chain,
    messages_tokens,
)
from kai_platform.llm.cancel import on_cancel
from kai_platform.llm.netguard import Aborter, BlockedAddress, check_url, guarded_http_client

PASSTHROUGH_PARAMS = ("temperature", "top_p", "max_tokens", "stop", "presence_penalty", "frequency_penalty", "seed")


def map_sdk_error(exc: BaseException, provider: str, timeout: float) -> LLMError:
    for inner in error_chain(exc):
        if isinstance(inner, BlockedAddress):
            return LLMBlockedAddress(str(inner), provider=provider)
    if isinstance(exc, openai.APITimeoutError):
        return LLMTimeout(f"{provider} did not answer within {timeout:g} s", provider=provider)
    if isinstance(exc, openai.APIConnectionError):
        cause = next((e for e in error_chain(exc) if e is not exc), None)
        reason = f": {cause}" if cause else ""
        return LLMConnectionError(f"cannot reach {provider}{reason}", provider=provider)
    if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
        return LLMAuthError(f"{provider} rejected the API key ({exc.status_code})", provider=provider)
    if isinstance(exc, (openai.BadRequestError, openai.NotFoundError, openai.UnprocessableEntityError)):
        return LLMBadRequest(f"{provider} refused the request ({exc.status_code}): {_message(exc)}", provider=provider)
    if isinstance(exc, openai.APIStatusError):
        return LLMError(f"{provider} answered {exc.status_code}: {_message(exc)}", provider=provider)
    return LLMError(f"{provider} call failed: {type(exc).__name__}: {exc}", provider=provider)


def _message(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:300]
    return str(getattr(exc, "message", exc))[:300]


def to_openai_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for m in messages:
        role = m.get("role")
        if role == "assistant" and m.get("tool_calls"):
            out.append(
                {
                    "role": "assistant",
                    "content": m.get("content") or None,
                    "tool_calls": [
                        {
                            "id": c["id"],
                            "type": "function",
                            "function": {"name": c["name"], "arguments": json.dumps(c.get("arguments") or {})},
                        }
                        for c in m["tool_calls"]
                    ],
                }
            )
        elif role == "tool":
            out.append({"role": "tool", "tool_call_id": m.get("tool_call_id"), "content": str(m.get("content") or "")})
        else:
            out.append({"role": role, "content": str(m.get("content") or "")})
    return out


class OpenAICompatibleClient(LLMClient):
    provider_type = "openai"

    def __init__(self, *, provider_type: str = "openai", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.provider_type = provider_type

    @property
    def endpoint(self) -> str:
        url = self.base_url or DEFAULT_BASE_URLS.get(self.provider_type)
        if not url:
            raise LLMBadRequest(f"a {self.provider_type} provider needs a base_url", provider=self.provider_type)
        return url

    def _sdk_client(self, aborter: Aborter | None = None) -> openai.OpenAI:
        try:
            check_url(self.endpoint, self.allowlist)
        except BlockedAddress as exc:
            raise LLMBlockedAddress(str(exc), provider=self.provider_type) from exc
        http_client = guarded_http_client(self.allowlist, timeout=self.timeout, aborter=aborter)
        common: dict[str, Any] = {
            "api_key": self.api_key or "unused",
            "timeout": self.timeout,
            "max_retries": 0,
            "http_client": http_client,
        }
        if self.provider_type == "azure":
            return openai.AzureOpenAI(
                azure_endpoint=self.endpoint, api_version=self.options.get("api_version") or "2024-06-01", **common
            )
        return openai.OpenAI(base_url=self.endpoint, **common)

    def _request(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, params: dict[str, Any]
    ) -> dict[str, Any]:
        """The streamed chat-completions request (usage included) for ``messages`` and ``tools``."""
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": to_openai_messages(messages),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        kwargs.update({k: params[k] for k in PASSTHROUGH_PARAMS if params.get(k) is not None})
        if tools:
            kwargs["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t["name"],
                        "description": t.get("description", ""),
                        "parameters": t.get("parameters") or {"type": "object", "properties": {}},
                    },
                }
                for t in tools
            ]
        fmt = structured.response_format(params)
        if fmt is not None:
            kwargs["response_format"] = structured.openai_response_format(fmt, self.provider_type)
        return kwargs

    def stream(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        params: dict[str, Any] | None = None,
    ) -> Iterator[Chunk]:
        params = {**self.options, **(params or {})}
        kwargs = self._request(messages, tools, params)
        cancel = params.get("cancel")
        aborter = Aborter()
        client = self._sdk_client(aborter)
        deadline = time.monotonic() + self.timeout
        usage = None
        text_parts: list[str] = []
        pending: dict[int, dict[str, Any]] = {}
        try:
            # a cancel shuts the call's socket down: it ends now, even before the first byte
            with client, on_cancel(cancel, aborter.abort):
                stream = client.chat.completions.create(**kwargs)
                with stream:
                    for event in stream:
                        if cancel is not None and cancel.is_set():
                            return
                        if time.monotonic() > deadline:
                            raise LLMTimeout(
                                f"{self.provider_type} did not finish within {self.timeout:g} s",
                                provider=self.provider_type,
                            )
                        if getattr(event, "usage", None):
                            usage = Usage(event.usage.prompt_tokens or 0, event.usage.completion_tokens or 0)
                        for choice in event.choices or []:
                            delta = choice.delta
                            if delta is None:
                                continue
                            if delta.content:
                                text_parts.append(delta.content)
                                yield Chunk(kind="text", text=delta.content)
                            for tc in delta.tool_calls or []:
                                slot = pending.setdefault(tc.index or 0, {"id": "", "name": "", "arguments": ""})
                                if tc.id:
                                    slot["id"] = tc.id
                                if tc.function is not None:
                                    slot["name"] += tc.function.name or ""
                                    slot["arguments"] += tc.function.arguments or ""
        except LLMError:
            raise
        except Exception as exc:
            if aborter.aborted:  # ended by its cancel: no error, no usage (the caller counts what it saw)
                return
            raise map_sdk_error(exc, self.provider_type, self.timeout) from exc
        for index in sorted(pending):
            slot = pending[index]
            try:
                arguments = json.loads(slot["arguments"] or "{}")
            except json.JSONDecodeError:
                arguments = {"_raw": slot["arguments"]}
            yield Chunk(kind="tool_call", tool_call=ToolCall(slot["id"] or f"call_{index}", slot["name"], arguments))
        if usage is None:  # servers without stream usage (older Ollama/vLLM): estimate
            usage = Usage(messages_tokens(messages), count_tokens("".join(text_parts)), estimated=True)
        yield Chunk(kind="usage", usage=usage)
