"""The agents app's side of the LLM layer: model resolution (docs/decisions.md, "default model"), the
client of a resolved model (keys decrypted only for it), provider validation. Agents themselves
are called only through runs (``apps.agents.calls``), never from here."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from django.conf import settings
from rest_framework import exceptions

from apps.agents import selectors, services
from apps.agents.errors import ProviderRejected, ProviderTimeout, ProviderUnavailable
from apps.agents.models import ModelConfig, Provider
from kai_platform.api.errors import Unprocessable, codes
from kai_platform.llm import get_client
from kai_platform.llm.base import (
    LLMAuthError,
    LLMBadRequest,
    LLMBlockedAddress,
    LLMConnectionError,
    LLMError,
    LLMTimeout,
)
from kai_platform.llm.pricing import cost_usd

logger = logging.getLogger(__name__)

_FAMILIES = (
    ("gpt-", ("openai", "azure", "openai_compatible")),
    ("o1", ("openai", "azure")),
    ("o3", ("openai", "azure")),
    ("o4", ("openai", "azure")),
    ("claude", ("anthropic",)),
    ("deepseek", ("deepseek",)),
    ("databricks-", ("databricks",)),
    ("llama", ("ollama", "vllm")),
    ("mistral", ("ollama", "vllm")),
    ("qwen", ("ollama", "vllm")),
)


@dataclass
class ResolvedModel:
    provider: Provider | None
    provider_type: str
    model: str
    requested: str
    parameters: dict = field(default_factory=dict)
    api_key_name: str = ""
    note: str = ""

    @property
    def label(self) -> str:
        return self.provider.name if self.provider else self.provider_type


def model_resolve(*, organization, name: str | None) -> ResolvedModel:
    """Name → provider and provider model. Empty → the organization's default model (its
    ``settings.default_model``, else the default provider's model, else builtin). A model with no
    configured provider runs on builtin when ``KAI_LLM_FALLBACK=builtin`` (with a log line) and is
    an error naming it otherwise."""
    providers = selectors.providers_active(organization=organization)
    requested = (name or "").strip() or str((organization.settings or {}).get("default_model") or "")
    if not requested:
        default = next((p for p in providers if p.is_default), None)
        if default is not None:
            return ResolvedModel(
                default,
                default.provider_type,
                default.default_model or "builtin",
                "",
                dict(default.config.get("parameters") or {}),
            )
        requested = "builtin"
    if requested.startswith("builtin"):
        builtin = next((p for p in providers if p.provider_type == "builtin"), None)
        return ResolvedModel(builtin, "builtin", requested, requested)
    config = (
        ModelConfig.objects.for_org(organization)
        .filter(name=requested, is_active=True)
        .select_related("provider__credential")
        .first()
    )
    if config is not None:
        provider = (
            config.provider
            if (config.provider and config.provider.is_active)
            else next((p for p in providers if p.provider_type == config.provider_type), None)
        )
        if provider is not None or config.provider_type == "builtin":
            return ResolvedModel(
                provider,
                provider.provider_type if provider else "builtin",
                config.model,
                requested,
                dict(config.parameters or {}),
                config.api_key_name,
            )
        return _fallback(
            organization,
            requested,
            f"model {requested!r} names provider type {config.provider_type!r}, which has no active provider",
        )
    provider = next((p for p in providers if p.default_model == requested and p.provider_type != "builtin"), None)
    if provider is None:
        lowered = requested.lower()
        for prefix, types in _FAMILIES:
            if lowered.startswith(prefix):
                provider = next((p for p in providers if p.provider_type in types), None)
                break
    if provider is not None:
        return ResolvedModel(
            provider, provider.provider_type, requested, requested, dict(provider.config.get("parameters") or {})
        )
    return _fallback(organization, requested, f"model {requested!r} has no configured provider")


def _fallback(organization, requested: str, reason: str) -> ResolvedModel:
    if settings.KAI_LLM_FALLBACK == "builtin":
        logger.info("%s; running it on the builtin provider (KAI_LLM_FALLBACK=builtin)", reason)
        builtin = next(
            (p for p in selectors.providers_active(organization=organization) if p.provider_type == "builtin"), None
        )
        return ResolvedModel(builtin, "builtin", "builtin", requested, note=f"{reason}; ran on builtin")
    raise Unprocessable(
        f"{reason[0].upper()}{reason[1:]}. Configure a provider for it (providers, models).",
        code=codes.AGENT_CONFIG_INVALID,
        errors=[{"field": "llm", "message": reason}],
    )


def client_for(*, organization, resolved: ResolvedModel, timeout: float | None = None):
    provider = resolved.provider
    api_key = None
    if resolved.api_key_name:
        credential = selectors.credential_by_name(organization=organization, name=resolved.api_key_name)
        if credential is None:
            raise Unprocessable(
                f"Model {resolved.requested!r} names API key {resolved.api_key_name!r}, which does not exist.",
                code=codes.AGENT_CONFIG_INVALID,
            )
        api_key = services.credential_use(credential=credential)["value"]
    elif provider is not None and provider.credential is not None:
        api_key = services.credential_use(credential=provider.credential)["value"]
    call_timeout = (
        timeout
        or (provider.timeout_seconds if provider and provider.timeout_seconds else None)
        or settings.KAI_LLM_TIMEOUT_SECONDS
    )
    options = dict(resolved.parameters)
    if provider is not None and provider.api_version:
        options["api_version"] = provider.api_version
    return get_client(
        resolved.provider_type,
        model=resolved.model,
        api_key=api_key,
        base_url=provider.base_url if provider else None,
        timeout=call_timeout,
        allowlist=selectors.network_allowlist(organization=organization),
        options=options,
    )


def raise_for_llm_error(exc: LLMError, resolved_label: str, timeout: float):
    if isinstance(exc, LLMTimeout):
        raise ProviderTimeout(f"Provider '{resolved_label}' did not answer within {timeout:g} s.") from exc
    if isinstance(exc, LLMConnectionError):
        raise ProviderUnavailable(f"Provider '{resolved_label}' cannot be reached: {exc.message}") from exc
    if isinstance(exc, LLMAuthError):
        raise ProviderRejected(
            f"Provider '{resolved_label}' rejected its API key.", errors=[{"field": "api_key", "message": exc.message}]
        ) from exc
    if isinstance(exc, LLMBlockedAddress):
        raise ProviderRejected(
            f"Provider '{resolved_label}' points at a refused address: {exc.message}",
            errors=[{"field": "base_url", "message": exc.message}],
        ) from exc
    if isinstance(exc, LLMBadRequest):
        raise ProviderRejected(f"Provider '{resolved_label}': {exc.message}") from exc
    raise ProviderUnavailable(f"Provider '{resolved_label}' failed: {exc.message}") from exc


VALIDATE_TIMEOUT_SECONDS = 10.0


def provider_validate(*, provider: Provider, actor) -> dict:
    """A real minimal call (builtin always validates). Unreachable endpoints fail within 10 s."""
    resolved = ResolvedModel(
        provider,
        provider.provider_type,
        provider.default_model or ("builtin" if provider.provider_type == "builtin" else ""),
        provider.default_model,
    )
    if not resolved.model:
        raise exceptions.ValidationError({"default_model": ["Set default_model: validation calls that model."]})
    timeout = min(provider.timeout_seconds or VALIDATE_TIMEOUT_SECONDS, VALIDATE_TIMEOUT_SECONDS)
    client = client_for(organization=provider.organization, resolved=resolved, timeout=timeout)
    started = time.perf_counter()
    try:
        completion = client.validate()
    except LLMError as exc:
        services.provider_record_validation(provider=provider, ok=False, error=exc.message)
        raise_for_llm_error(exc, provider.name, timeout)
    services.provider_record_validation(provider=provider, ok=True)
    cost = cost_usd(resolved.model, completion.usage.input_tokens, completion.usage.output_tokens)
    services.provider_record_usage(
        provider=provider,
        input_tokens=completion.usage.input_tokens,
        output_tokens=completion.usage.output_tokens,
        cost=cost,
    )
    return {
        "valid": True,
        "provider_id": provider.pk,
        "model": resolved.model,
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
    }
