"""LLM provider clients behind one streaming interface (docs/agents.md).

``get_client(provider_type, model=…, api_key=…, base_url=…, timeout=…, allowlist=…, options=…)``
returns an ``LLMClient``; ``client.stream(messages, tools, params)`` yields ``Chunk``s and ends with
usage; ``client.complete(…)`` gathers them. ``pricing.cost_usd`` turns usage into dollars.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from kai_platform.llm.base import (  # noqa: F401
    Chunk,
    Completion,
    LLMAuthError,
    LLMBadRequest,
    LLMBlockedAddress,
    LLMClient,
    LLMConnectionError,
    LLMError,
    LLMTimeout,
    ToolCall,
    Usage,
)
from kai_platform.llm.builtin import BuiltinClient
from kai_platform.llm.netguard import guarded_http_client

OPENAI_COMPATIBLE = ("openai", "azure", "ollama", "vllm", "deepseek", "databricks", "openai_compatible")
PROVIDER_TYPES = ("builtin", *OPENAI_COMPATIBLE, "anthropic")
#: the endpoint an OpenAI-compatible provider of this type calls when it names none
DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "deepseek": "https://api.deepseek.com/v1",
    "ollama": "http://localhost:11434/v1",
}


def needs_base_url(provider_type: str) -> bool:
    """Whether a provider of this type has no endpoint of its own (azure, vllm, …): it must name one."""
    return provider_type in OPENAI_COMPATIBLE and provider_type not in DEFAULT_BASE_URLS


def preload_clients(sdks: Collection[str] = ("openai", "anthropic")) -> None:
    """Import the named provider SDKs now (seconds of imports), so a worker's first model call does
    not spend its timeout on them."""
    unknown = set(sdks) - {"openai", "anthropic"}
    if unknown:
        raise ValueError(f"KAI_PRELOAD_SDKS names no provider SDK: {', '.join(sorted(unknown))}")
    if "openai" in sdks:
        # deferred: heavy — the OpenAI SDK, imported here on purpose by the preload
        from kai_platform.llm import openai_compat  # noqa: F401

        _warm_openai_call()
    if "anthropic" in sdks:
        # deferred: heavy — the Anthropic SDK, imported here on purpose by the preload
        import anthropic  # noqa: F401

        # deferred: heavy — the client module over that SDK, imported here on purpose by the preload
        from kai_platform.llm import anthropic_client  # noqa: F401


def _warm_openai_call() -> None:
    """One streamed chat completion through the SDK, answered in-process (no network): the SDK
    imports its resources, streaming helpers and transport lazily on a client's first call —
    about a second, several under load, that a provider's timeout would otherwise pay."""
    # deferred: heavy — the HTTP client stack and the OpenAI SDK, loaded on first use to keep process start fast
    import httpx2
    import openai

    guarded_http_client(None, timeout=1.0).close()  # its connection pool's modules
    sse = (
        b'data: {"id":"w","object":"chat.completion.chunk","created":0,"model":"m","choices":'
        b'[{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
    )
    transport = httpx2.MockTransport(
        lambda request: httpx2.Response(200, content=sse, headers={"content-type": "text/event-stream"})
    )
    with openai.OpenAI(
        base_url="http://warm-up.invalid/v1",
        api_key="unused",
        max_retries=0,
        http_client=httpx2.Client(transport=transport),
    ) as client:
        for _ in client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}], stream=True, stream_options={"include_usage": True}
        ):
            pass


def get_client(provider_type: str, **kwargs: Any) -> LLMClient:
    if provider_type == "builtin":
        return BuiltinClient(**kwargs)
    if provider_type in OPENAI_COMPATIBLE:
        # deferred: heavy — openai_compat loads the OpenAI SDK; loaded on first use (workers preload it)
        from kai_platform.llm.openai_compat import OpenAICompatibleClient

        return OpenAICompatibleClient(provider_type=provider_type, **kwargs)
    if provider_type == "anthropic":
        # deferred: heavy — loaded with the provider's first client (workers preload it)
        from kai_platform.llm.anthropic_client import AnthropicClient

        return AnthropicClient(**kwargs)
    raise LLMBadRequest(f"unknown provider type {provider_type!r}", provider=provider_type)
