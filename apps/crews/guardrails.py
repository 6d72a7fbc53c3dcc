"""Task guardrails (CrewAI's ``guardrail``): a check of a task's answer that, when it fails, sends
the task back to its agent with the feedback. Either a named builtin check —
``json_schema:<name>``, ``regex:<pattern>``, ``max_words:<n>``, ``not_contains:<text>`` — or a
sentence that a model call judges (answering ``{"valid": bool, "feedback": str}``)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from apps.crews import structured
from apps.runs.runner import RunFailed

BUILTIN_PREFIXES = ("json_schema:", "regex:", "max_words:", "not_contains:")
JUDGE_SCHEMA = {
    "type": "object",
    "properties": {"valid": {"type": "boolean"}, "feedback": {"type": "string"}},
    "required": ["valid", "feedback"],
    "additionalProperties": False,
}


@dataclass
class Verdict:
    ok: bool
    feedback: str = ""


def is_builtin(guardrail: str) -> bool:
    return guardrail.startswith(BUILTIN_PREFIXES)


def builtin_check(guardrail: str, organization) -> Callable[[str], Verdict]:
    """The check a builtin guardrail names; a malformed one fails the run before any model call."""
    kind, _, argument = guardrail.partition(":")
    if kind == "json_schema":
        schema = structured.named_schema(organization, argument.strip(), f"guardrail {guardrail!r}")
        return lambda text: _schema_verdict(schema, text)
    if kind == "regex":
        try:
            pattern = re.compile(argument, re.DOTALL)
        except re.error as exc:
            raise RunFailed(f"guardrail {guardrail!r} is not a valid regular expression: {exc}", type="guardrail")
        return lambda text: Verdict(
            bool(pattern.search(text)), f"the answer must match the regular expression {argument!r}"
        )
    if kind == "max_words":
        if not argument.strip().isdigit():
            raise RunFailed(f"guardrail {guardrail!r}: max_words takes a whole number", type="guardrail")
        limit = int(argument)
        return lambda text: Verdict(
            len(text.split()) <= limit, f"the answer has {len(text.split())} words; at most {limit} are allowed"
        )
    needle = argument
    return lambda text: Verdict(needle.lower() not in text.lower(), f"the answer must not contain {needle!r}")


def _schema_verdict(schema: structured.OutputSchema, text: str) -> Verdict:
    _, errors = structured.check(schema, text)
    return Verdict(not errors, "; ".join(errors))


def judge_prompt(guardrail: str, task_description: str, answer: str) -> str:
    return (
        f"You check the answer to a task against a requirement.\n\nRequirement: {guardrail}\n\n"
        f"Task: {task_description}\n\nAnswer to check:\n{answer}\n\n"
        'Reply with JSON {"valid": true|false, "feedback": "<what to fix, empty when valid>"}.'
    )


def judge_verdict(text: str) -> Verdict:
    """A judge model's reply as a verdict; a reply that is not the JSON asked for fails the check."""
    value, problem = structured.parse_json(text)
    if problem or not isinstance(value, dict) or not isinstance(value.get("valid"), bool):
        return Verdict(False, "the guardrail judge did not answer with {valid, feedback}: " + text[:300])
    return Verdict(value["valid"], str(value.get("feedback") or ""))


def retry_prompt(prompt: str, answer: str, feedback: str, attempt: int) -> str:
    return (
        f"{prompt}\n\nYour previous answer (attempt {attempt}) was refused:\n{answer[:2000]}\n\n"
        f"Feedback: {feedback}\nGive a corrected final answer."
    )


def dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)
