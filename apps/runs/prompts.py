"""The engine's prompt building: what every kind of run sends to a model, in one place."""
from __future__ import annotations

import re

_PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def interpolate(text: str, inputs: dict) -> str:
    """CrewAI's ``{name}`` placeholders, filled from the run's inputs (unknown ones stay as written)."""
    if not inputs:
        return text
    return _PLACEHOLDER_RE.sub(lambda m: str(inputs[m.group(1)]) if m.group(1) in inputs else m.group(0), text)


def task_prompt(description: str, expected_output: str = "", context: list[tuple[str, str]] | None = None) -> str:
    parts = [description.strip()]
    if expected_output:
        parts.append(f"Expected output: {expected_output.strip()}")
    for name, output in context or []:
        parts.append(f"Context from {name}: {output.strip()}")
    return "\n\n".join(parts)
