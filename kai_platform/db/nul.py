"""PostgreSQL's ``text`` and ``jsonb`` cannot hold the NUL character, so a value from outside the
platform (a model's answer, a tool's output, an exception's message) is stored with each NUL
replaced by U+FFFD, the character a byte that does not decode becomes."""

from __future__ import annotations

from typing import Any

REPLACEMENT = "\ufffd"


def without_nul(value: Any) -> Any:
    """``value`` with every NUL in its strings (dict keys included) replaced; the same object when it
    holds none, so the common case copies nothing."""
    if isinstance(value, str):
        return value.replace("\x00", REPLACEMENT) if "\x00" in value else value
    if isinstance(value, dict):
        items = [(without_nul(key), without_nul(item)) for key, item in value.items()]
        if all(k is key and i is item for (k, i), (key, item) in zip(items, value.items())):
            return value
        return dict(items)
    if isinstance(value, list | tuple) and not hasattr(value, "_fields"):
        cleaned = [without_nul(item) for item in value]
        if all(c is item for c, item in zip(cleaned, value)):
            return value
        return type(value)(cleaned)
    return value
