"""Workflow definitions (``WorkflowDefinition``, docs/workflows.md): JSON schema, defaults, DAG checks.

``validate_definition`` answers every problem at once, each as ``{field, message, step_id}``:
schema violations, duplicate step ids, unknown ``depends_on``, cycles (named step by step),
steps whose agent is missing or not of the organization, and conditions or ``{{ }}`` templates
that do not parse or read a step that is not among the step's dependencies, and approval steps
(``type: approval``, no agent) without a question or with two assignees or two deadlines.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC

from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from jsonschema import Draft202012Validator

from apps.agents.models import Agent
from apps.approvals.services import approval_assignee
from apps.workflows import conditions
from kai_platform.tenancy.roles import Role

TRIGGER_TYPES = ("manual", "schedule", "webhook", "agent_completion", "voice_command")
STRATEGIES = ("fail_fast", "continue", "retry", "fallback")
BACKOFFS = ("linear", "exponential", "fixed")
MAX_STEPS = 200
MAX_ATTEMPTS = 10
MAX_DELAY_MS = 3_600_000
MAX_TIMEOUT_MS = 7 * 24 * 3_600_000
MAX_APPROVAL_SECONDS = 90 * 24 * 3600
STEP_TYPES = ("agent", "approval")
APPROVAL_DEFAULTS = ("approve", "reject")
STEP_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_\-]{0,99}$"

AGENT_STEP_SCHEMA = {
    "type": "object",
    "required": ["id", "action"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "pattern": STEP_ID_PATTERN},
        "type": {"enum": list(STEP_TYPES)},
        "name": {"type": "string", "maxLength": 200},
        "agent_number": {"type": "integer", "minimum": 1},
        "agent_id": {"type": "string", "format": "uuid"},
        "action": {"type": "string", "minLength": 1, "maxLength": 4000},
        "parameters": {"type": "object"},
        "depends_on": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        "condition": {"type": "string", "maxLength": conditions.MAX_LENGTH},
        "timeout_ms": {"type": "integer", "minimum": 1, "maximum": MAX_TIMEOUT_MS},
        "llm_params": {
            "type": "object",
            "description": "LLM parameters of the step's run (temperature, max_tokens, latency_ms, tokens_per_s…).",
        },
    },
    "oneOf": [
        {"required": ["agent_number"], "not": {"required": ["agent_id"]}},
        {"required": ["agent_id"], "not": {"required": ["agent_number"]}},
    ],
}

#: ``type: approval``: a person answers (apps.approvals); no agent, no LLM call
APPROVAL_STEP_SCHEMA = {
    "type": "object",
    "required": ["id", "type"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "pattern": STEP_ID_PATTERN},
        "type": {"const": "approval"},
        "name": {"type": "string", "maxLength": 200},
        "question": {"type": "string", "minLength": 1, "maxLength": 4000},
        "message": {"type": "string", "minLength": 1, "maxLength": 4000},
        "proposed": {
            "description": "What the person approves or edits (templates allowed); by default the "
            "output of its dependency (an object of them when there are several)."
        },
        "assignee_role": {"enum": [r.value for r in Role if r != Role.AGENT]},
        "assignee_user": {"type": "string", "minLength": 1, "maxLength": 254},
        "timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_APPROVAL_SECONDS},
        "deadline": {"type": "string", "minLength": 1, "maxLength": 64},
        "default_action": {"enum": list(APPROVAL_DEFAULTS)},
        "depends_on": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        "condition": {"type": "string", "maxLength": conditions.MAX_LENGTH},
    },
}

STEP_SCHEMA = {
    "if": {"type": "object", "required": ["type"], "properties": {"type": {"const": "approval"}}},
    "then": APPROVAL_STEP_SCHEMA,
    "else": AGENT_STEP_SCHEMA,
}

DEFINITION_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["steps"],
    "additionalProperties": False,
    "properties": {
        "trigger": {
            "type": "object",
            "additionalProperties": False,
            "required": ["type"],
            "properties": {
                "type": {"enum": list(TRIGGER_TYPES)},
                "conditions": {"type": "object"},
                "source_agent": {"type": "integer", "minimum": 1},
            },
        },
        "steps": {"type": "array", "minItems": 1, "maxItems": MAX_STEPS, "items": STEP_SCHEMA},
        "error_handling": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "strategy": {"enum": list(STRATEGIES)},
                "fallback_steps": {"type": "array", "maxItems": MAX_STEPS, "items": STEP_SCHEMA},
                "notification_on_error": {"type": "boolean"},
            },
        },
        "timeout_ms": {"type": "integer", "minimum": 1, "maximum": MAX_TIMEOUT_MS},
        "retry_policy": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "max_attempts": {"type": "integer", "minimum": 1, "maximum": MAX_ATTEMPTS},
                "backoff_strategy": {"enum": list(BACKOFFS)},
                "delay_ms": {"type": "integer", "minimum": 0, "maximum": MAX_DELAY_MS},
            },
        },
    },
}

_VALIDATOR = Draft202012Validator(DEFINITION_SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)


@dataclass(frozen=True)
class StepType:
    """A step type another app adds (no agent): its JSON schema, the fields that may hold
    ``{{ }}`` templates (rendered when the step starts), and what its execution's definition holds."""

    name: str
    schema: dict
    template_keys: tuple = ()


#: step types registered by other apps (``register_step_type``); their executions run on a worker
#: through the run engine's step runners (``apps.runs.registry.register_step_runner``)
EXTRA_STEP_TYPES: dict[str, StepType] = {}


def register_step_type(step_type: StepType) -> None:
    """Add a step type: STEP_SCHEMA gains a branch for it (in place: the definition schema holds
    it twice) and the validator is rebuilt."""
    global _VALIDATOR
    if step_type.name in EXTRA_STEP_TYPES or step_type.name in STEP_TYPES:
        return
    EXTRA_STEP_TYPES[step_type.name] = step_type
    rest = dict(STEP_SCHEMA)
    STEP_SCHEMA.clear()
    STEP_SCHEMA.update(
        {
            "if": {"type": "object", "required": ["type"], "properties": {"type": {"const": step_type.name}}},
            "then": step_type.schema,
            "else": rest,
        }
    )
    _VALIDATOR = Draft202012Validator(DEFINITION_SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)


def extra_step_type(step: dict) -> StepType | None:
    kind = step.get("type") if isinstance(step, dict) else None
    return EXTRA_STEP_TYPES.get(kind) if isinstance(kind, str) else None


@dataclass
class Problem:
    field: str
    message: str
    step_id: str | None = None

    def as_dict(self) -> dict:
        return {"field": self.field, "message": self.message, "step_id": self.step_id}


@dataclass
class Checked:
    definition: dict
    problems: list[Problem] = field(default_factory=list)
    agents: dict = field(default_factory=dict)  # "number:N" / "id:UUID" → Agent

    @property
    def valid(self) -> bool:
        return not self.problems


def normalize(definition: dict) -> dict:
    """The definition with the defaults of docs/workflows.md filled in (call on a schema-valid definition)."""
    d = dict(definition)
    trigger = dict(d.get("trigger") or {"type": "manual"})
    trigger.setdefault("conditions", {})
    d["trigger"] = trigger
    handling = dict(d.get("error_handling") or {})
    handling.setdefault("strategy", "fail_fast")
    handling.setdefault("fallback_steps", [])
    handling.setdefault("notification_on_error", False)
    d["error_handling"] = handling
    policy = dict(d.get("retry_policy") or {})
    policy.setdefault("max_attempts", 3 if handling["strategy"] == "retry" else 1)
    policy.setdefault("backoff_strategy", "exponential")
    policy.setdefault("delay_ms", 1000)
    d["retry_policy"] = policy
    d.setdefault("timeout_ms", None)

    def step(s):
        s = dict(s)
        if is_approval(s):
            s.setdefault("default_action", "reject")
        elif not extra_step_type(s):
            s.setdefault("parameters", {})
        s.setdefault("depends_on", [])
        return s

    d["steps"] = [step(s) for s in d["steps"]]
    handling["fallback_steps"] = [step(s) for s in handling["fallback_steps"]]
    return d


def backoff_ms(policy: dict, failed_attempt: int) -> int:
    """Delay before the attempt after ``failed_attempt`` (1-based): fixed d, linear d·n, exponential d·2^(n-1)."""
    delay = int(policy.get("delay_ms") or 0)
    strategy = policy.get("backoff_strategy") or "exponential"
    if strategy == "fixed":
        value = delay
    elif strategy == "linear":
        value = delay * failed_attempt
    else:
        value = delay * (2 ** (failed_attempt - 1))
    return min(value, MAX_DELAY_MS)


def is_approval(step: dict) -> bool:
    """A ``type: approval`` step: a person answers it (no agent runs)."""
    return step.get("type") == "approval"


def approval_question(step: dict) -> str:
    return step.get("question") or step.get("message") or ""


def approval_deadline(step: dict):
    """The step's absolute ``deadline`` as an aware datetime (None when absent or unreadable)."""

    raw = step.get("deadline")
    try:
        value = parse_datetime(raw) if isinstance(raw, str) else None
    except ValueError:
        value = None
    if value is not None and timezone.is_naive(value):
        value = timezone.make_aware(value, UTC)
    return value


def agent_key(step: dict) -> str:
    return f"number:{step['agent_number']}" if "agent_number" in step else f"id:{str(step['agent_id']).lower()}"


def _schema_problems(definition) -> list[Problem]:
    problems = []
    for error in sorted(_VALIDATOR.iter_errors(definition), key=lambda e: list(map(str, e.absolute_path))):
        path = list(error.absolute_path)
        field_name = "definition" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
        step_id = None
        if len(path) >= 2 and path[0] == "steps" and isinstance(path[1], int):
            step_id = _step_id_at(definition, ("steps",), path[1])
        elif len(path) >= 3 and path[:2] == ["error_handling", "fallback_steps"] and isinstance(path[2], int):
            step_id = _step_id_at(definition, ("error_handling", "fallback_steps"), path[2])
        message = error.message
        if error.validator == "oneOf" and path and len(path) in (2, 3):
            message = "a step names its agent by exactly one of agent_number or agent_id"
        problems.append(Problem(field_name, message, step_id))
    return problems


def _step_id_at(definition, where, index):
    node = definition
    try:
        for key in where:
            node = node[key]
        value = node[index].get("id")
        return value if isinstance(value, str) else None
    except (KeyError, IndexError, TypeError, AttributeError):
        return None


def find_cycle(steps: list[dict]) -> list[str] | None:
    """One cycle of the depends_on graph as ``[a, b, …, a]``, or None."""
    graph = {s["id"]: [d for d in s.get("depends_on") or []] for s in steps}
    WHITE, GREY, BLACK = 0, 1, 2
    color = {node: WHITE for node in graph}
    for start in graph:
        if color[start] != WHITE:
            continue
        stack = [(start, iter(graph[start]))]
        path = [start]
        color[start] = GREY
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                color[node] = BLACK
                stack.pop()
                path.pop()
                continue
            if child not in graph:
                continue
            if color[child] == GREY:
                return path[path.index(child) :] + [child]
            if color[child] == WHITE:
                color[child] = GREY
                stack.append((child, iter(graph[child])))
                path.append(child)
    return None


def ancestors(steps: list[dict]) -> dict[str, set[str]]:
    """Every step's transitive dependencies (an acyclic graph)."""
    graph = {s["id"]: list(s.get("depends_on") or []) for s in steps}
    memo: dict[str, set[str]] = {}

    def visit(node, seen=()):
        if node in memo:
            return memo[node]
        found: set[str] = set()
        for dep in graph.get(node, []):
            if dep in graph and dep not in seen:
                found.add(dep)
                found |= visit(dep, (*seen, node))
        memo[node] = found
        return found

    for node in graph:
        visit(node)
    return memo


def _check_graph(steps: list[dict], *, where: str, visible: set[str], problems: list[Problem]) -> None:
    """Ids, dependencies, cycle and expressions of one step list. ``visible``: ids of steps whose
    results a condition may read besides its own ancestors (main steps, for fallback steps)."""
    seen: dict[str, int] = {}
    for index, step in enumerate(steps):
        if step["id"] in seen:
            problems.append(
                Problem(
                    f"{where}[{index}].id",
                    f"duplicate step id {step['id']!r} (also step {seen[step['id']]})",
                    step["id"],
                )
            )
        else:
            seen[step["id"]] = index
    ids = set(seen)
    for index, step in enumerate(steps):
        for dep in step.get("depends_on") or []:
            if dep == step["id"]:
                problems.append(Problem(f"{where}[{index}].depends_on", f"step {dep!r} depends on itself", step["id"]))
            elif dep not in ids:
                problems.append(
                    Problem(f"{where}[{index}].depends_on", f"unknown step {dep!r} in depends_on", step["id"])
                )
    cycle = find_cycle([s for s in steps if s["id"] in ids])
    if cycle and len(cycle) > 2:  # a self-dependency was reported above
        problems.append(Problem(f"{where}", "the steps form a cycle: " + " → ".join(cycle), cycle[0]))
    if cycle:
        return
    upstream = ancestors(steps)
    for index, step in enumerate(steps):
        readable = upstream.get(step["id"], set()) | visible
        expressions = []
        if step.get("condition") is not None:
            expressions.append((f"{where}[{index}].condition", step["condition"]))
        extra = extra_step_type(step)
        for key in ("parameters", "proposed", "question", "message", *(extra.template_keys if extra else ())):
            for text in conditions.template_expressions(step.get(key)):
                expressions.append((f"{where}[{index}].{key}", text))
        for field_name, text in expressions:
            try:
                tree = conditions.parse(text)
            except conditions.ConditionError as exc:
                problems.append(Problem(field_name, f"invalid expression {text!r}: {exc}", step["id"]))
                continue
            for ref in sorted(conditions.referenced_steps(tree) - readable):
                reason = (
                    "is not a step of this workflow"
                    if ref not in ids and ref not in visible
                    else "is not among its dependencies (depends_on, directly or through other steps)"
                )
                problems.append(Problem(field_name, f"reads steps.{ref}, which {reason}", step["id"]))


def _check_step_targets(step_list: list, *, where: str, agents: dict, organization, problems: list) -> None:
    """Each step's target exists: an approval step's assignee, an agent step's agent."""
    for index, step in enumerate(step_list):
        if is_approval(step):
            _check_approval(step, where=f"{where}[{index}]", organization=organization, problems=problems)
            continue
        if extra_step_type(step):
            continue
        if agent_key(step) not in agents:
            if "agent_number" in step:
                problems.append(
                    Problem(
                        f"{where}[{index}].agent_number",
                        f"no agent number {step['agent_number']} in this organization",
                        step["id"],
                    )
                )
            else:
                problems.append(
                    Problem(
                        f"{where}[{index}].agent_id", f"no agent {step['agent_id']} in this organization", step["id"]
                    )
                )


def validate_definition(definition, *, organization) -> Checked:
    """Check a definition for ``organization``; ``Checked.definition`` is the normalized form."""
    if not isinstance(definition, dict):
        return Checked(definition={}, problems=[Problem("definition", "must be a JSON object")])
    problems = _schema_problems(definition)
    if problems:
        return Checked(definition=definition, problems=problems)
    d = normalize(definition)
    steps = d["steps"]
    fallback = d["error_handling"]["fallback_steps"]
    _check_graph(steps, where="definition.steps", visible=set(), problems=problems)
    main_ids = {s["id"] for s in steps}
    for index, step in enumerate(fallback):
        if step["id"] in main_ids:
            problems.append(
                Problem(
                    f"definition.error_handling.fallback_steps[{index}].id",
                    f"fallback step id {step['id']!r} is also a main step id",
                    step["id"],
                )
            )
    _check_graph(fallback, where="definition.error_handling.fallback_steps", visible=main_ids, problems=problems)
    if d["error_handling"]["strategy"] == "fallback" and not fallback:
        problems.append(
            Problem(
                "definition.error_handling.fallback_steps", "the fallback strategy needs at least one fallback step"
            )
        )
    trigger = d["trigger"]
    if trigger["type"] == "agent_completion" and "source_agent" not in trigger:
        problems.append(
            Problem(
                "definition.trigger.source_agent", "an agent_completion trigger names its source_agent (agent_number)"
            )
        )
    agents = _resolve_agents(
        organization,
        [s for s in (*steps, *fallback) if not is_approval(s) and not extra_step_type(s)],
        extra_numbers=[trigger["source_agent"]] if "source_agent" in trigger else [],
    )
    for where, step_list in (("definition.steps", steps), ("definition.error_handling.fallback_steps", fallback)):
        _check_step_targets(step_list, where=where, agents=agents, organization=organization, problems=problems)
    if "source_agent" in trigger and f"number:{trigger['source_agent']}" not in agents:
        problems.append(
            Problem(
                "definition.trigger.source_agent", f"no agent number {trigger['source_agent']} in this organization"
            )
        )
    return Checked(definition=d, problems=problems, agents=agents)


def _check_approval(step: dict, *, where: str, organization, problems: list[Problem]) -> None:
    """What the schema cannot say about an approval step: one question, one assignee, one deadline."""
    sid = step["id"]
    if "question" in step and "message" in step:
        problems.append(Problem(f"{where}.message", "give the question as `question` or `message`, not both", sid))
    elif not approval_question(step):
        problems.append(Problem(f"{where}.question", "an approval step asks a `question` (or `message`)", sid))
    if "assignee_role" in step and "assignee_user" in step:
        problems.append(
            Problem(f"{where}.assignee_user", "name either `assignee_role` or `assignee_user`, not both", sid)
        )
    elif "assignee_user" in step:
        try:
            approval_assignee(organization=organization, value=step["assignee_user"])
        except ValueError as exc:
            problems.append(Problem(f"{where}.assignee_user", str(exc), sid))
    if "timeout_seconds" in step and "deadline" in step:
        problems.append(Problem(f"{where}.deadline", "give either `timeout_seconds` or `deadline`, not both", sid))
    elif "deadline" in step and approval_deadline(step) is None:
        problems.append(Problem(f"{where}.deadline", f"{step['deadline']!r} is not an ISO 8601 date-time", sid))


def _resolve_agents(organization, steps: list[dict], *, extra_numbers=()) -> dict:
    numbers = {s["agent_number"] for s in steps if "agent_number" in s} | set(extra_numbers)
    ids = set()
    for s in steps:
        if "agent_id" in s:
            try:
                ids.add(uuid.UUID(str(s["agent_id"])))
            except ValueError:
                pass
    found = {}
    if numbers or ids:
        query = Q(agent_number__in=numbers) | Q(pk__in=ids)
        for agent in Agent.objects.for_org(organization).filter(query):
            if agent.agent_number in numbers:
                found[f"number:{agent.agent_number}"] = agent
            if agent.pk in ids:
                found[f"id:{str(agent.pk).lower()}"] = agent
    return found
