"""The engine's prompt building: what every kind of run sends to a model, in one place."""

from __future__ import annotations

import re

#: ``{{`` and ``}}`` are literal braces; ``{name}`` is a placeholder
_TOKEN_RE = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


def interpolate(text: str, inputs: dict) -> str:
    """CrewAI's ``{name}`` placeholders, filled from the run's inputs (``{{``/``}}`` give literal
    braces; an unknown placeholder stays as written — runs refuse missing inputs at create)."""

    def fill(match):
        name = match.group(1)
        if name is None:
            return match.group(0)[0]
        return str(inputs[name]) if inputs and name in inputs else match.group(0)

    return _TOKEN_RE.sub(fill, text) if text else text


def literal(text: str) -> str:
    """``text`` as ``interpolate`` gives it back unchanged (its braces escaped): for what the platform
    writes into a prompt from data (a document, a JSON example), never from a person's template."""
    return (text or "").replace("{", "{{").replace("}", "}}")


def placeholders_of(text: str) -> list[str]:
    """The ``{name}`` placeholders of ``text`` in order of first use (escaped braces skipped)."""
    names = [m.group(1) for m in _TOKEN_RE.finditer(text or "") if m.group(1)]
    return list(dict.fromkeys(names))


def missing_inputs(texts, inputs: dict) -> list[str]:
    """Placeholders of ``texts`` the inputs do not fill, sorted."""
    return sorted({name for text in texts for name in placeholders_of(text) if name not in (inputs or {})})


def task_prompt(description: str, expected_output: str = "", context: list[tuple[str, str]] | None = None) -> str:
    parts = [description.strip()]
    if expected_output:
        parts.append(f"Expected output: {expected_output.strip()}")
    for name, output in context or []:
        parts.append(f"Context from {name}: {output.strip()}")
    return "\n\n".join(parts)
