"""Price table: USD per million tokens (input, output). Unknown models cost 0 and say so."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

PRICES_PER_MILLION: dict[str, tuple[str, str]] = {
    "builtin": ("0", "0"),
    "gpt-4o-mini": ("0.15", "0.60"),
    "gpt-4o": ("2.50", "10.00"),
    "gpt-4.1-nano": ("0.10", "0.40"),
    "gpt-4.1-mini": ("0.40", "1.60"),
    "gpt-4.1": ("2.00", "8.00"),
    "gpt-4-turbo": ("10.00", "30.00"),
    "gpt-4": ("30.00", "60.00"),
    "gpt-3.5-turbo": ("0.50", "1.50"),
    "o1-mini": ("1.10", "4.40"),
    "o1": ("15.00", "60.00"),
    "o3-mini": ("1.10", "4.40"),
    "o3": ("2.00", "8.00"),
    "o4-mini": ("1.10", "4.40"),
    "claude-3-5-haiku": ("0.80", "4.00"),
    "claude-3-5-sonnet": ("3.00", "15.00"),
    "claude-3-7-sonnet": ("3.00", "15.00"),
    "claude-3-haiku": ("0.25", "1.25"),
    "claude-3-opus": ("15.00", "75.00"),
    "claude-sonnet-4": ("3.00", "15.00"),
    "claude-opus-4": ("15.00", "75.00"),
    "claude-haiku-4": ("1.00", "5.00"),
    "deepseek-chat": ("0.27", "1.10"),
    "deepseek-reasoner": ("0.55", "2.19"),
}
_MILLION = Decimal(1_000_000)
_QUANTUM = Decimal("0.000001")


def price_for(model: str, override: dict[str, Any] | None = None) -> tuple[Decimal, Decimal, bool]:
    """(input, output) USD per million tokens, and whether the model is priced. A model name
    matches its longest priced prefix (``gpt-4o-2024-08-06`` → ``gpt-4o``)."""
    if override and "input_per_1m" in override and "output_per_1m" in override:
        return Decimal(str(override["input_per_1m"])), Decimal(str(override["output_per_1m"])), True
    name = (model or "").lower()
    if name.startswith("builtin"):
        return Decimal(0), Decimal(0), True
    name = name.rsplit("/", 1)[-1]  # "openai/gpt-4o", "databricks-…/x"
    for key in sorted(PRICES_PER_MILLION, key=len, reverse=True):
        if name == key or name.startswith(key + "-") or name.startswith(key + ":") or name.startswith(key + "@"):
            inp, out = PRICES_PER_MILLION[key]
            return Decimal(inp), Decimal(out), True
    return Decimal(0), Decimal(0), False


def cost_usd(model: str, input_tokens: int, output_tokens: int, override: dict[str, Any] | None = None) -> Decimal:
    inp, out, _ = price_for(model, override)
    total = (inp * input_tokens + out * output_tokens) / _MILLION
    return total.quantize(_QUANTUM, rounding=ROUND_HALF_UP)
