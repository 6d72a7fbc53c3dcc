"""LLM provider clients behind one streaming interface (docs/agents.md).

``get_client(provider_type, model=…, api_key=…, base_url=…, timeout=…, allowlist=…, options=…)``
returns an ``LLMClient``; ``client.stream(messages, tools, params)`` yields ``Chunk``s and ends with
usage; ``client.complete(…)`` gathers them. ``pricing.cost_usd`` turns usage into dollars.
"""
from __future__ import annotations

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

OPENAI_COMPATIBLE = ("openai", "azure", "ollama", "vllm", "deepseek", "databricks", "openai_compatible")
PROVIDER_TYPES = ("builtin", *OPENAI_COMPATIBLE, "anthropic")


def preload_clients() -> None:
    """Import the provider SDKs now (seconds of imports), so a worker's first model call does not
    spend its timeout on them."""
    from kai_platform.llm import anthropic_client, openai_compat  # noqa: F401

    for sdk in ("openai", "anthropic", "httpx"):
        try:
            __import__(sdk)
        except ImportError:
            pass


def get_client(provider_type: str, **kwargs) -> LLMClient:
    if provider_type == "builtin":
        from kai_platform.llm.builtin import BuiltinClient

        return BuiltinClient(**kwargs)
    if provider_type in OPENAI_COMPATIBLE:
        from kai_platform.llm.openai_compat import OpenAICompatibleClient

        return OpenAICompatibleClient(provider_type=provider_type, **kwargs)
    if provider_type == "anthropic":
        from kai_platform.llm.anthropic_client import AnthropicClient

        return AnthropicClient(**kwargs)
    raise LLMBadRequest(f"unknown provider type {provider_type!r}", provider=provider_type)
