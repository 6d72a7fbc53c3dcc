"""Agent, task and crew generation from a description, through the LLM layer (seed 001).

Structured output uses function calling: the model is offered one tool (``emit_agent``,
``emit_task`` or ``emit_crew``) whose parameters are the object's JSON schema, and answers by
calling it (a JSON object in the text is accepted too). The answer is validated against the schema
— and for crews, by the CrewAI YAML validator — and on failure the model is asked again with the
errors, up to ``MAX_ATTEMPTS`` times; then the request fails with 422 naming what was wrong.

The builtin offline provider has no language model behind it: for these requests it is given a
deterministic draft built from the description (``draft``), passed through its tool-call
simulation, so the same validate/retry path runs and the result is reproducible.
"""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
from django.db import connection
from rest_framework import status

from apps.agents.selectors import tool_names
from apps.crews import specs
from apps.runs import llm as llm_layer
from kai_platform.api.errors import Unprocessable, codes
from kai_platform.api.errors.exceptions import KaiAPIException, ServiceUnavailable
from kai_platform.llm.base import LLMError
from kai_platform.llm.pricing import cost_usd

MAX_ATTEMPTS = 3

_TEXT = {"type": "string", "minLength": 1, "maxLength": 4000}
_NAMES = {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 100}, "maxItems": 20}
AGENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "role", "goal", "backstory"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 200},
        "role": _TEXT,
        "goal": _TEXT,
        "backstory": _TEXT,
        "tools": _NAMES,
    },
    "additionalProperties": False,
}
TASK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "description", "expected_output"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 200},
        "description": _TEXT,
        "expected_output": _TEXT,
        "agent": {"type": "string", "maxLength": 200},
        "tools": _NAMES,
    },
    "additionalProperties": False,
}
_CREW_AGENT = {
    **AGENT_SCHEMA,
    "required": ["role", "goal", "backstory"],
    "properties": {k: v for k, v in AGENT_SCHEMA["properties"].items() if k != "name"},
}
_CREW_TASK = {
    **TASK_SCHEMA,
    "required": ["description", "expected_output", "agent"],
    "properties": {k: v for k, v in TASK_SCHEMA["properties"].items() if k != "name"},
}
CREW_SCHEMA = {
    "type": "object",
    "required": ["name", "description", "process", "agents", "tasks"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 200},
        "description": _TEXT,
        "process": {"enum": ["sequential", "hierarchical"]},
        "agents": {"type": "object", "minProperties": 1, "maxProperties": 10, "additionalProperties": _CREW_AGENT},
        "tasks": {"type": "object", "minProperties": 1, "maxProperties": 20, "additionalProperties": _CREW_TASK},
    },
    "additionalProperties": False,
}
SCHEMAS = {"agent": AGENT_SCHEMA, "task": TASK_SCHEMA, "crew": CREW_SCHEMA}
INSTRUCTIONS = {
    "agent": "Design one AI agent (name, role, goal, backstory, tools) for this description.",
    "task": "Design one task (name, description, expected_output, optionally the agent and tools) for this description.",
    "crew": (
        "Design a CrewAI crew for this description: a name, a description, the process, `agents` keyed by "
        "identifier (role, goal, backstory, tools) and `tasks` keyed by identifier (description, "
        "expected_output, agent naming one of the agents)."
    ),
}


class InvalidModelOutput(KaiAPIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = "The model did not produce a valid object."
    error_type = "invalid_llm_output"
    kai_code = codes.AGENT_EXECUTION_FAILED


class GenerationUnavailable(ServiceUnavailable):
    default_detail = "The LLM provider could not be used for generation."
    error_type = "provider_unavailable"


# --- deterministic drafts (the builtin provider's structured answers) --------------------------

_LEAD = re.compile(
    r"^\s*(?:please\s+)?(?:create|build|make|generate|design|write|define|set up)\s+(?:me\s+)?"
    r"(?:an?\s+|the\s+)?",
    re.I,
)
_SPLIT = re.compile(r"\b(agent|task|crew|team)\b", re.I)
_LINK = re.compile(r"^\s*(?:that|which|who|to|for|with|including|in charge of)\s+", re.I)
_STOP = {"a", "an", "the", "for", "of", "and", "to", "in", "on", "with", "that", "which", "can", "will"}
_TOOL_HINTS = (
    ("calculat", "calculator"),
    ("math", "calculator"),
    ("time", "current_time"),
    ("date", "current_time"),
    ("web", "http_request"),
    ("http", "http_request"),
    ("api", "http_request"),
    ("remember", "memory_store"),
    ("memory", "memory_query"),
    ("file", "file_reader"),
    ("document", "file_reader"),
)


def _subject_and_rest(description: str) -> tuple[str, str]:
    text = _LEAD.sub("", description.strip().rstrip("."))
    parts = _SPLIT.split(text, maxsplit=1)
    if len(parts) == 3:
        subject, rest = parts[0].strip(), _LINK.sub("", parts[2]).strip()
        if not subject:  # "a task for analyzing X"
            subject, rest = rest, ""
        return subject, rest
    return text, ""


def _title(text: str, limit: int = 6) -> str:
    words = [w for w in re.findall(r"[A-Za-z0-9][A-Za-z0-9'\-]*", text)][:limit]
    return " ".join(w if w.isupper() else w.capitalize() for w in words) or "General"


def _sentence(text: str) -> str:
    text = text.strip()
    return (text[0].upper() + text[1:]) if text else text


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:40] or "item"


def _tools_for(text: str, available: set[str]) -> list[str]:
    lowered = text.lower()
    return sorted({tool for hint, tool in _TOOL_HINTS if hint in lowered and tool in available})


def draft_agent(description: str, available_tools: set[str]) -> dict:
    subject, rest = _subject_and_rest(description)
    title = _title(subject) or "Assistant"
    goal = _sentence(rest) if rest else f"Help with {subject or description}"
    return {
        "name": f"{title} Agent",
        "role": f"{title} Specialist",
        "goal": goal,
        "backstory": f"You are an experienced {title.lower()} specialist. {goal.rstrip('.')}.",
        "tools": _tools_for(description, available_tools),
    }


def draft_task(description: str, available_tools: set[str]) -> dict:
    subject, rest = _subject_and_rest(description)
    focus = rest or subject or description
    return {
        "name": _title(focus),
        "description": f"{_sentence(focus).rstrip('.')}. Work step by step and state what the conclusions rest on.",
        "expected_output": f"A concise, structured report on {focus.rstrip('.')}",
        "tools": _tools_for(description, available_tools),
    }


def draft_crew(description: str, available_tools: set[str], process: str = "sequential") -> dict:
    subject, rest = _subject_and_rest(description)
    text = rest or subject
    match = re.search(r"\b(?:including|covering|with)\s+(.+)$", text, re.I)
    topic = text[: match.start()].strip() if match else text
    items = match.group(1) if match else ""
    parts = [p.strip() for p in re.split(r",|\band\b", items) if p.strip()] if items else []
    parts = [p for p in parts if p.lower() not in _STOP][:6] or ["research", "analysis", "reporting"]
    topic_text = re.sub(r"^(?:for|of)\s+", "", topic, flags=re.I) or "the request"
    agents, tasks = {}, {}
    for part in parts:
        key = _slug(part)
        role = f"{_title(topic_text, 4)} {_title(part, 3)} Specialist".strip()
        agents[f"{key}_agent"] = {
            "role": role,
            "goal": f"Own the {part} work on {topic_text}",
            "backstory": f"You are a seasoned {part} specialist for {topic_text}.",
            "tools": _tools_for(part, available_tools),
        }
        tasks[f"{key}_task"] = {
            "description": f"Do the {part} for {topic_text}: {{topic}}",
            "expected_output": f"The {part} results for {topic_text}, ready for the next step",
            "agent": f"{key}_agent",
        }
    return {
        "name": f"{_title(topic_text, 5)} Crew",
        "description": _sentence(description.strip()),
        "process": process,
        "agents": agents,
        "tasks": tasks,
    }


DRAFTS = {"agent": draft_agent, "task": draft_task, "crew": draft_crew}


def fit(value, schema: dict):
    """``value`` with each string cut to its schema's ``maxLength``: a draft built from a long
    description stays a valid object (the description itself may have 4,000 characters)."""
    if isinstance(value, str) and "maxLength" in schema:
        return value[: schema["maxLength"]]
    if isinstance(value, dict):
        properties, other = schema.get("properties", {}), schema.get("additionalProperties")
        return {k: fit(v, properties.get(k, other if isinstance(other, dict) else {})) for k, v in value.items()}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [fit(v, schema["items"]) for v in value]
    return value


# --- validation --------------------------------------------------------------------------------


def validation_errors(kind: str, value) -> list[str]:
    if not isinstance(value, dict):
        return ["the answer is not a JSON object"]
    validator = jsonschema.Draft202012Validator(SCHEMAS[kind])
    errors = []
    for error in sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path)):
        path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        errors.append(f"{path}: {error.message}")
    if not errors and kind == "crew":
        spec = specs.parse_crew(specs.dump_yaml(value["agents"]), specs.dump_yaml(value["tasks"]), value["process"])
        errors = [f"{e.field}: {e.as_envelope_error()['message']}" for e in spec.errors]
    return errors


def _extract(text: str, calls, tool_name: str):
    for call in calls:
        if call.name == tool_name:
            return call.arguments
    match = re.search(r"\{.*\}", text or "", re.S)
    if match:
        try:
            return json.loads(match.group(0))
        except json.JSONDecodeError:
            return None
    return None


def generate(
    *, organization, kind: str, description: str, model: str = "", process: str = "sequential", drafter=None
) -> dict:
    """A schema-valid ``kind`` object for the description (see the module docstring)."""
    resolved = _resolve(organization, model)
    available = tool_names(organization=organization)
    tool_name = f"emit_{kind}"
    tool = {"name": tool_name, "description": f"Return the {kind}.", "parameters": SCHEMAS[kind]}
    messages = [
        {
            "role": "system",
            "content": f"You design AI agent configurations. {INSTRUCTIONS[kind]} Answer by calling "
            f"{tool_name}. Tools you may name: {', '.join(sorted(available)) or 'none'}.",
        },
        {"role": "user", "content": description},
    ]
    drafter = drafter or DRAFTS[kind]
    problems: list[str] = []
    for _attempt in range(1, MAX_ATTEMPTS + 1):
        params = {}
        if resolved.provider_type == "builtin":
            draft = drafter(description, available, process) if kind == "crew" else drafter(description, available)
            draft = fit(draft, SCHEMAS[kind])
            params["tool_calls"] = [{"name": tool_name, "arguments": draft}]
        text, calls = _call(resolved, organization, messages, [tool], params)
        value = _extract(text, calls, tool_name)
        if isinstance(value, dict) and kind != "crew" and "tools" in value:
            unknown = [t for t in value.get("tools") or [] if t not in available]
            problems = [f"$.tools: unknown tool {t!r}" for t in unknown]
        else:
            problems = []
        problems += validation_errors(kind, value)
        if not problems:
            return value
        messages += [
            {"role": "assistant", "content": text or json.dumps(value, default=str)},
            {
                "role": "user",
                "content": f"That {kind} is invalid: {'; '.join(problems)}. "
                f"Call {tool_name} again with a corrected object.",
            },
        ]
    raise InvalidModelOutput(
        f"The model did not produce a valid {kind} in {MAX_ATTEMPTS} attempts: {'; '.join(problems[:5])}",
        errors=[{"field": kind, "message": p} for p in problems[:20]],
    )


def _resolve(organization, model: str) -> llm_layer.ResolvedModel:
    try:
        resolved = llm_layer.resolve_model(organization=organization, model_name=model)
        llm_layer.breaker_allow(resolved.provider_key)
        llm_layer.check_budgets(organization=organization, resolved=resolved)
    except llm_layer.ModelUnavailable as exc:
        raise Unprocessable(str(exc), code=codes.AGENT_CONFIG_INVALID, errors=[{"field": "model", "message": str(exc)}])
    except (llm_layer.CircuitOpen, llm_layer.BudgetExceeded) as exc:
        raise GenerationUnavailable(str(exc))
    return resolved


def _call(resolved, organization, messages, tools, params):
    if not connection.in_atomic_block:
        connection.close()
    try:
        completion = resolved.client.complete(messages, tools, params)
    except LLMError as exc:
        if exc.kind in llm_layer.BREAKER_KINDS:
            llm_layer.breaker_failure(resolved.provider_key)
        raise GenerationUnavailable(f"The LLM call to {resolved.requested!r} failed ({exc.kind}): {exc.message}")
    llm_layer.breaker_success(resolved.provider_key)
    cost = cost_usd(
        resolved.pricing_model, completion.usage.input_tokens, completion.usage.output_tokens, resolved.pricing_override
    )
    llm_layer.record_provider_usage(
        resolved=resolved,
        input_tokens=completion.usage.input_tokens,
        output_tokens=completion.usage.output_tokens,
        cost=cost,
    )
    return completion.text, completion.tool_calls


def crew_fields(value: dict) -> dict:
    """A generated crew as the fields of a Crew (``agents_yaml``/``tasks_yaml`` in CrewAI's format)."""
    return {
        "name": value["name"],
        "description": value["description"],
        "process": value["process"],
        "agents_yaml": specs.dump_yaml(value["agents"]),
        "tasks_yaml": specs.dump_yaml(value["tasks"]),
    }
