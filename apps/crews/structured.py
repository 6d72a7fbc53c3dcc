"""Structured task output: which JSON Schema a task's answer must match (``output_json`` /
``output_pydantic`` name one the organization keeps in apps.schemas, ``output_schema`` gives it
inline), how the model is asked for it, and how an answer is parsed and checked (``jsonschema``)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from apps.runs.runner import RunFailed
from apps.schemas.documents import schema_problem, validator_class
from apps.schemas.selectors import schema_document

_FENCE_RE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


@dataclass
class OutputSchema:
    name: str  # what logs and errors call it: "<name>@<version>" or "inline"
    schema: dict

    def response_format(self) -> dict:
        return {"response_format": {"name": self.name.split("@")[0], "schema": self.schema}}

    def instructions(self) -> str:
        return (
            "Your final answer must be one JSON document, nothing else, valid against this JSON Schema:\n"
            + json.dumps(self.schema, ensure_ascii=False)
        )


def task_schema(organization, task) -> OutputSchema | None:
    """The schema a task's answer must match, or None; a name the organization lacks fails the run."""
    inline = getattr(task, "output_schema", None)
    if isinstance(inline, dict) and inline:
        problem = schema_problem(inline)
        if problem:
            raise RunFailed(
                f"task {task.key!r}: output_schema is not a valid JSON Schema: {problem}", type="schema_invalid"
            )
        return OutputSchema("inline", inline)
    reference = getattr(task, "output_json", None) or getattr(task, "output_pydantic", None)
    if not reference:
        return None
    return named_schema(organization, str(reference), f"task {task.key!r}")


def named_schema(organization, reference: str, who: str) -> OutputSchema:
    found = schema_document(organization=organization, reference=reference)
    if found is None:
        raise RunFailed(
            f"{who} names JSON Schema {reference!r}, which the organization does not have "
            "(create it under /api/v1/schemas)",
            type="schema_missing",
            schema=reference,
        )
    return OutputSchema(found[1], found[0])


def parse_json(text: str):
    """The JSON document in a model's answer (bare, or in a ```json fence, or the outermost {…}/[…])."""
    candidates = [text.strip()]
    candidates += [m.strip() for m in _FENCE_RE.findall(text)]
    for opener, closer in (("{", "}"), ("[", "]")):
        start, end = text.find(opener), text.rfind(closer)
        if 0 <= start < end:
            candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            return json.loads(candidate), None
        except (json.JSONDecodeError, ValueError):
            continue
    return None, "the answer is not a JSON document"


def check(schema: OutputSchema, text: str) -> tuple[object, list[str]]:
    """(parsed value, validation errors); no errors means the answer is valid."""
    value, problem = parse_json(text)
    if problem:
        return None, [problem]
    errors = sorted(validator_class(schema.schema)(schema.schema).iter_errors(value), key=lambda e: list(e.path))
    return value, [f"{'/'.join(str(p) for p in e.path) or '(root)'}: {e.message}" for e in errors[:10]]
