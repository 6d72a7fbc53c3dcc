"""The run engine's LLM call rules: which client serves a model name (the ``model_resolve``
service the agents app provides, DESIGN §14), budgets checked before each call (provider, agent
and organization monthly limits), and a circuit breaker per provider (Redis, shared by every worker).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Sum
from django.utils import timezone
from django_redis import get_redis_connection

from apps.runs.models import UsageRollup
from apps.runs.registry import service
from kai_platform.llm.base import LLMClient

logger = logging.getLogger(__name__)

BUILTIN_KEY = "builtin"


class ModelUnavailable(Exception):
    """No provider serves the model (production, no fallback)."""


@dataclass
class ResolvedModel:
    client: LLMClient
    requested: str
    model: str  # what the provider is asked for
    provider_type: str
    provider_key: str  # circuit-breaker key: provider id, or "builtin"
    provider: Any = None  # agents.Provider or None (runs imports no feature app)
    pricing_override: dict | None = None
    note: str = ""

    @property
    def label(self) -> str:
        """How answers name the provider: its name, else its type."""
        return getattr(self.provider, "name", None) or self.provider_type

    @property
    def pricing_model(self) -> str:
        return "builtin" if self.provider_type == "builtin" else self.model


_resolved: dict[tuple, tuple[float, ResolvedModel]] = {}


def resolve_ttl() -> float:
    """How long a process reuses a model's resolution for an organization (its providers, model
    configs and credentials read once per this, not once per run); 0 turns the reuse off."""
    return float(getattr(settings, "KAI_RUN_RESOLVE_CACHE_SECONDS", 1.0))


def resolve_model(*, organization, model_name: str | None) -> ResolvedModel:
    """The client and pricing that serve ``model_name`` for the organization (the ``model_resolve``
    service); raises ModelUnavailable when no provider serves it. A resolution is reused for
    ``resolve_ttl()`` seconds; a change saved in this process forgets them (``forget_resolved``)."""
    default = (getattr(organization, "settings", None) or {}).get("default_model") or ""
    key = (getattr(organization, "pk", organization), model_name or "", str(default))
    now = time.monotonic()
    ttl = resolve_ttl()
    hit = _resolved.get(key)
    if hit is not None and now - hit[0] < ttl:
        return hit[1]
    resolved = service("model_resolve")(organization, model_name)
    if ttl > 0:
        if len(_resolved) >= 10_000:
            _resolved.clear()
        _resolved[key] = (now, resolved)
    return resolved


def provider_of(*, organization, model_name: str | None, resolve):
    """The provider that serves ``model_name`` for the organization — ``resolve(organization=…,
    name=…).provider``, no client built (a caller that only checks budgets before queuing a run) —
    reused and forgotten as ``resolve_model``'s resolutions are."""
    default = (getattr(organization, "settings", None) or {}).get("default_model") or ""
    key = ("provider", getattr(organization, "pk", organization), model_name or "", str(default))
    now = time.monotonic()
    ttl = resolve_ttl()
    hit = _resolved.get(key)
    if hit is not None and now - hit[0] < ttl:
        return hit[1]
    provider = resolve(organization=organization, name=model_name).provider
    if ttl > 0:
        if len(_resolved) >= 10_000:
            _resolved.clear()
        _resolved[key] = (now, provider)
    return provider


def forget_resolved(**_) -> None:
    """Drop every reused resolution (a provider, model config or credential changed)."""
    _resolved.clear()


# --- circuit breaker ---------------------------------------------------------------------------


class CircuitOpen(Exception):
    pass


#: LLMError kinds that say the provider is unhealthy (bad requests and auth errors do not)
BREAKER_KINDS = frozenset({"timeout", "connection", "provider"})


def _redis():
    return get_redis_connection("default")


def _cb_key(provider_key: str, part: str) -> str:
    return f"{settings.KAI_REDIS_PREFIX}:runs:cb:{provider_key}:{part}"


def breaker_threshold() -> int:
    return int(getattr(settings, "KAI_CIRCUIT_FAILURES", 5))


def breaker_cooldown() -> int:
    return int(getattr(settings, "KAI_CIRCUIT_COOLDOWN_SECONDS", 30))


def breaker_state(provider_key: str) -> dict:
    """``{"state": "closed"|"open"|"half_open", "failures": n, "retry_at": epoch|None}``."""
    try:
        failures, open_until = _redis().mget(_cb_key(provider_key, "failures"), _cb_key(provider_key, "open_until"))
    except Exception:
        return {"state": "unknown", "failures": None, "retry_at": None}
    failures = int(failures or 0)
    if open_until and float(open_until) > time.time():
        return {"state": "open", "failures": failures, "retry_at": float(open_until)}
    if failures >= breaker_threshold():
        return {"state": "half_open", "failures": failures, "retry_at": None}
    return {"state": "closed", "failures": failures, "retry_at": None}


def breaker_allow(provider_key: str) -> int | None:
    """Raise CircuitOpen while the provider's breaker is open; else return its failure count (None
    when Redis could not say), which ``breaker_success`` uses to skip a reset there is no need for."""
    try:
        open_until, failures = _redis().mget(_cb_key(provider_key, "open_until"), _cb_key(provider_key, "failures"))
    except Exception:
        return None  # Redis down: do not block runs on the breaker
    if open_until and float(open_until) > time.time():
        wait = int(float(open_until) - time.time()) + 1
        raise CircuitOpen(
            f"the circuit breaker of provider {provider_key} is open after repeated failures; retry in {wait} s"
        )
    return int(failures or 0)


def breaker_success(provider_key: str, failures: int | None = None) -> None:
    """A call succeeded: the failures count again from zero. ``failures`` = what ``breaker_allow``
    saw before the call; 0 skips the write (the usual case: one Redis round trip less per call)."""
    if failures == 0:
        return
    try:
        _redis().delete(_cb_key(provider_key, "failures"))
    except Exception:
        pass


def breaker_failure(provider_key: str) -> None:
    try:
        redis = _redis()
        failures = redis.incr(_cb_key(provider_key, "failures"))
        redis.expire(_cb_key(provider_key, "failures"), breaker_cooldown() * 10)
        if failures >= breaker_threshold():
            redis.set(_cb_key(provider_key, "open_until"), time.time() + breaker_cooldown(), ex=breaker_cooldown())
            logger.warning("circuit breaker of provider %s opened after %s failures", provider_key, failures)
    except Exception:
        pass


# --- budgets -----------------------------------------------------------------------------------


class BudgetExceeded(Exception):
    pass


def month_start():
    return timezone.now().date().replace(day=1)


def provider_budget(provider) -> tuple[Decimal | None, Decimal]:
    """(limit, spent this month) of a provider — the agents app's usage table."""
    if provider is None or provider.budget_limit is None:
        return None, Decimal(0)

    return provider.budget_limit, service("provider_month_spend")(provider)


def agent_budget_limit(agent) -> Decimal | None:
    config = getattr(agent, "config", None) or {}
    value = config.get("budget_limit_usd") if isinstance(config, dict) else None
    return Decimal(str(value)) if value not in (None, "") else None


def agent_month_spend(*, organization_id, agent_id) -> Decimal:
    total = (
        UsageRollup.objects.for_org(organization_id)
        .filter(agent_id=agent_id, day__gte=month_start())
        .aggregate(total=Sum("cost"))["total"]
    )
    return total or Decimal(0)


def organization_budget_limit(organization) -> Decimal | None:
    value = (getattr(organization, "settings", None) or {}).get("monthly_budget_usd")
    return Decimal(str(value)) if value not in (None, "") else None


def organization_month_spend(*, organization_id) -> Decimal:
    total = (
        UsageRollup.objects.for_org(organization_id)
        .filter(day__gte=month_start())
        .aggregate(total=Sum("cost"))["total"]
    )
    return total or Decimal(0)


def check_budgets(*, organization, resolved: ResolvedModel, agent=None) -> None:
    """Before an LLM call: the provider's, the agent's and the organization's monthly budgets."""
    check_budgets_for(organization=organization, provider=resolved.provider, agent=agent)


def check_budgets_for(*, organization, provider, agent=None) -> None:
    """The three budgets of a call served by ``provider`` (None: builtin) for ``agent``; raises
    BudgetExceeded naming the one that is spent. Also what callers check before queuing a run."""
    limit, spent = provider_budget(provider)
    if limit is not None and spent >= limit:
        raise BudgetExceeded(
            f"budget exceeded: provider {provider.name!r} spent ${spent:.4f} of its ${limit:.4f} monthly budget"
        )
    agent_limit = agent_budget_limit(agent) if agent is not None else None
    if agent_limit is not None:
        spent = agent_month_spend(organization_id=organization.pk, agent_id=agent.pk)
        if spent >= agent_limit:
            raise BudgetExceeded(
                f"budget exceeded: agent {agent.name!r} spent ${spent:.4f} of its ${agent_limit:.4f} monthly budget"
            )
    org_limit = organization_budget_limit(organization)
    if org_limit is not None:
        spent = organization_month_spend(organization_id=organization.pk)
        if spent >= org_limit:
            raise BudgetExceeded(
                f"budget exceeded: the organization spent ${spent:.4f} of its ${org_limit:.4f} monthly budget"
            )


def budgets_configured(*, organization, resolved: ResolvedModel, agent=None) -> bool:
    return bool(
        (resolved.provider is not None and resolved.provider.budget_limit is not None)
        or (agent is not None and agent_budget_limit(agent) is not None)
        or organization_budget_limit(organization) is not None
    )


def record_provider_usage(*, resolved: ResolvedModel, input_tokens: int, output_tokens: int, cost) -> None:
    if resolved.provider is None:
        return

    service("provider_record_usage")(resolved.provider, input_tokens, output_tokens, cost)
