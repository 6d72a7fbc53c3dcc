"""CrewAI's YAML format: parse ``agents_yaml`` / ``tasks_yaml``, report every problem with its line,
and turn a valid pair into the ordered plan the runner executes.

agents.yaml::

    researcher:
      role: "{topic} Senior Data Researcher"
      goal: Uncover cutting-edge developments in {topic}
      backstory: You're a seasoned researcher …
      llm: gpt-4o-mini            # optional; else the crew's model, else the organization default
      tools: [calculator]         # optional
      agent_id: <uuid>            # optional: bind to a platform agent (usage, logs, socket)

tasks.yaml::

    research_task:
      description: Conduct a thorough research about {topic}
      expected_output: A list with 10 bullet points
      agent: researcher           # required for the sequential process
      context: [other_task]       # optional: earlier tasks whose output it reads
      human_input: true           # optional: a person approves (or edits) the output before the run goes on
      approval: {role: admin, timeout_seconds: 3600, default: reject, question: "…"}  # optional, with human_input
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

import yaml

from apps.runs.prompts import interpolate  # noqa: F401 (crews read placeholders with it)

AGENT_REQUIRED = ("role", "goal", "backstory")
AGENT_OPTIONAL = ("llm", "tools", "agent_id", "allow_delegation", "verbose", "max_iter", "memory", "cache",
                  "max_rpm", "function_calling_llm", "system_template", "prompt_template", "response_template",
                  "max_execution_time", "name", "description")
TASK_REQUIRED = ("description", "expected_output")
TASK_OPTIONAL = ("agent", "context", "tools", "async_execution", "output_file", "output_json", "output_pydantic",
                 "human_input", "callback", "name", "config", "markdown", "approval", "output_schema",
                 "create_directory", "guardrail", "guardrail_max_retries")
APPROVAL_KEYS = ("role", "user", "timeout_seconds", "default", "question")
_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
_PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass
class SpecError:
    field: str  # "agents_yaml" | "tasks_yaml"
    line: int | None
    message: str

    def as_dict(self) -> dict:
        return {"field": self.field, "line": self.line, "message": self.message}

    def as_envelope_error(self) -> dict:
        where = f"line {self.line}: " if self.line else ""
        return {"field": self.field, "message": where + self.message}


@dataclass
class AgentSpec:
    key: str
    role: str
    goal: str
    backstory: str
    llm: str = ""
    tools: list[str] = field(default_factory=list)
    agent_id: str | None = None
    line: int | None = None
    max_iter: int | None = None
    max_rpm: int | None = None
    max_execution_time: float | None = None
    allow_delegation: bool = False

    def as_dict(self) -> dict:
        return {"key": self.key, "role": self.role, "goal": self.goal, "backstory": self.backstory, "llm": self.llm,
                "tools": self.tools, "agent_id": self.agent_id}


@dataclass
class TaskSpec:
    key: str
    description: str
    expected_output: str
    agent: str | None
    context: list[str] = field(default_factory=list)
    tools: list[str] = field(default_factory=list)
    line: int | None = None
    human_input: bool = False
    approval: dict = field(default_factory=dict)
    async_execution: bool = False
    output_json: str | None = None
    output_pydantic: str | None = None
    output_schema: dict | None = None
    output_file: str | None = None
    create_directory: bool = True
    markdown: bool = False
    guardrail: str | None = None
    guardrail_max_retries: int = 3
    callback: str | None = None

    def as_dict(self) -> dict:
        return {"key": self.key, "description": self.description, "expected_output": self.expected_output,
                "agent": self.agent, "context": self.context, "tools": self.tools, "human_input": self.human_input,
                "approval": self.approval}


@dataclass
class CrewSpec:
    agents: list[AgentSpec]
    tasks: list[TaskSpec]
    errors: list[SpecError]
    placeholders: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.errors


def _line(node) -> int | None:
    return node.start_mark.line + 1 if node is not None and getattr(node, "start_mark", None) else None


def _compose(text: str, field_name: str, errors: list[SpecError]):
    """The YAML node tree (keeps line numbers), or None with the syntax error recorded."""
    if not isinstance(text, str) or not text.strip():
        errors.append(SpecError(field_name, None, "is empty: it must be a YAML mapping of names to definitions"))
        return None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        message = f"YAML syntax error: {problem}" + (f" ({context})" if context else "")
        errors.append(SpecError(field_name, mark.line + 1 if mark else None, message))
        return None
    if node is None:
        errors.append(SpecError(field_name, None, "is empty: it must be a YAML mapping of names to definitions"))
        return None
    if not isinstance(node, yaml.MappingNode):
        errors.append(SpecError(field_name, _line(node), "must be a mapping of names to definitions"))
        return None
    return node


def _scalar(node) -> object:
    return yaml.SafeLoader(".").construct_object(node, deep=True) if node is not None else None


def _entries(node, field_name: str, errors: list[SpecError], what: str):
    """(key, key line, {field: (value, line)}) for each entry; duplicates and bad shapes reported."""
    seen: dict[str, int | None] = {}
    for key_node, value_node in node.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        line = _line(key_node)
        if not key or not _KEY_RE.match(str(key)):
            errors.append(SpecError(field_name, line, f"{what} name {key!r} must be an identifier (letters, digits, _ -)"))
            continue
        if key in seen:
            errors.append(SpecError(field_name, line, f"{what} {key!r} is defined twice (first on line {seen[key]})"))
            continue
        seen[key] = line
        if not isinstance(value_node, yaml.MappingNode):
            errors.append(SpecError(field_name, _line(value_node) or line, f"{what} {key!r} must be a mapping of fields"))
            continue
        fields = {}
        for fkey_node, fvalue_node in value_node.value:
            try:
                value = _scalar(fvalue_node)
            except yaml.YAMLError as exc:
                errors.append(SpecError(field_name, _line(fvalue_node), f"{what} {key!r}: {exc}"))
                continue
            fields[str(fkey_node.value)] = (value, _line(fkey_node))
        yield key, line, fields


def _text(value) -> str:
    return value.strip() if isinstance(value, str) else ("" if value is None else str(value).strip())


def _name_list(fields, name, field_name, errors, what, key) -> list[str]:
    value, line = fields.get(name, (None, None))
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        errors.append(SpecError(field_name, line, f"{what} {key!r}: `{name}` must be a list of names"))
        return []
    return [item.strip() for item in value]


#: run-model keys: name → (accepted types, what the error says)
AGENT_RUN_SETTINGS = {"max_iter": (int, "a whole number"), "max_rpm": (int, "a whole number"),
                      "max_execution_time": ((int, float), "a number of seconds"), "allow_delegation": (bool, "true or false")}
TASK_RUN_SETTINGS = {"async_execution": (bool, "true or false"), "output_json": (str, "a schema name"),
                     "output_pydantic": (str, "a schema name"), "output_schema": (dict, "a JSON Schema mapping"),
                     "output_file": (str, "a path"), "create_directory": (bool, "true or false"),
                     "markdown": (bool, "true or false"), "guardrail": (str, "a sentence or a builtin check"),
                     "guardrail_max_retries": (int, "a whole number"), "callback": (str, "a webhook name or id")}


def _run_settings(fields, wanted: dict, field_name: str, errors: list[SpecError], who: str) -> dict:
    """The run-model keys present in ``fields``, type-checked (a wrong type is an error naming the key)."""
    values = {}
    for name, (types, expected) in wanted.items():
        value, line = fields.get(name, (None, None))
        if value is None:
            continue
        if not isinstance(value, types) or (types is int and isinstance(value, bool)) or (
                isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0):
            errors.append(SpecError(field_name, line, f"{who}: `{name}` must be {expected}"))
            continue
        values[name] = value.strip() if isinstance(value, str) else value
    return values


def parse_agents(text: str, errors: list[SpecError]) -> list[AgentSpec]:
    node = _compose(text, "agents_yaml", errors)
    if node is None:
        return []
    agents = []
    for key, line, fields in _entries(node, "agents_yaml", errors, "agent"):
        missing = [name for name in AGENT_REQUIRED if not _text(fields.get(name, (None,))[0])]
        if missing:
            errors.append(SpecError("agents_yaml", line, f"agent {key!r} is missing {', '.join(missing)}"))
        for name, (_, fline) in fields.items():
            if name not in AGENT_REQUIRED and name not in AGENT_OPTIONAL:
                errors.append(SpecError("agents_yaml", fline, f"agent {key!r}: unknown field {name!r}"))
        agent_id = _text(fields.get("agent_id", (None,))[0]) or None
        if agent_id:
            try:
                agent_id = str(uuid.UUID(agent_id))
            except ValueError:
                errors.append(SpecError("agents_yaml", fields["agent_id"][1], f"agent {key!r}: agent_id is not a UUID"))
                agent_id = None
        llm = fields.get("llm", (None,))[0]
        if isinstance(llm, dict):
            llm = llm.get("model") or ""
        agents.append(AgentSpec(
            key=key, role=_text(fields.get("role", (None,))[0]), goal=_text(fields.get("goal", (None,))[0]),
            backstory=_text(fields.get("backstory", (None,))[0]), llm=_text(llm),
            tools=_name_list(fields, "tools", "agents_yaml", errors, "agent", key), agent_id=agent_id, line=line,
            **_run_settings(fields, AGENT_RUN_SETTINGS, "agents_yaml", errors, f"agent {key!r}")))
    if not agents and not any(e.field == "agents_yaml" for e in errors):
        errors.append(SpecError("agents_yaml", None, "defines no agent"))
    return agents


def parse_tasks(text: str, errors: list[SpecError], agents: list[AgentSpec], *, agents_parsed: bool,
                process: str = "sequential") -> list[TaskSpec]:
    node = _compose(text, "tasks_yaml", errors)
    if node is None:
        return []
    agent_keys = {a.key for a in agents}
    tasks: list[TaskSpec] = []
    for key, line, fields in _entries(node, "tasks_yaml", errors, "task"):
        missing = [name for name in TASK_REQUIRED if not _text(fields.get(name, (None,))[0])]
        if missing:
            errors.append(SpecError("tasks_yaml", line, f"task {key!r} is missing {', '.join(missing)}"))
        for name, (_, fline) in fields.items():
            if name not in TASK_REQUIRED and name not in TASK_OPTIONAL:
                errors.append(SpecError("tasks_yaml", fline, f"task {key!r}: unknown field {name!r}"))
        agent_value, agent_line = fields.get("agent", (None, None))
        agent = _text(agent_value) or None
        if agent is None and process != "hierarchical":
            errors.append(SpecError("tasks_yaml", line, f"task {key!r} names no agent (required by the sequential "
                                                        "process)"))
        elif agent is not None and agents_parsed and agent not in agent_keys:
            known = ", ".join(sorted(agent_keys)) or "none"
            errors.append(SpecError("tasks_yaml", agent_line or line,
                                    f"task {key!r} names unknown agent {agent!r} (agents: {known})"))
        context = _name_list(fields, "context", "tasks_yaml", errors, "task", key)
        earlier = {t.key for t in tasks}
        for ref in context:
            if ref not in earlier:
                errors.append(SpecError("tasks_yaml", fields["context"][1],
                                        f"task {key!r}: context names {ref!r}, which is not an earlier task"))
        human_input, human_line = fields.get("human_input", (False, None))
        if not isinstance(human_input, bool):
            errors.append(SpecError("tasks_yaml", human_line, f"task {key!r}: `human_input` must be true or false"))
            human_input = False
        approval, approval_line = fields.get("approval", (None, None))
        if approval is None:
            approval = {}
        elif not isinstance(approval, dict) or set(approval) - set(APPROVAL_KEYS):
            errors.append(SpecError("tasks_yaml", approval_line, f"task {key!r}: `approval` must be a mapping of "
                                                                 f"{', '.join(APPROVAL_KEYS)}"))
            approval = {}
        elif approval.get("default", "reject") not in ("approve", "reject") or not (
                approval.get("timeout_seconds") is None or (isinstance(approval["timeout_seconds"], (int, float))
                                                            and approval["timeout_seconds"] > 0)):
            errors.append(SpecError("tasks_yaml", approval_line, f"task {key!r}: approval `default` must be approve "
                                                                 "or reject, `timeout_seconds` a positive number"))
            approval = {}
        tasks.append(TaskSpec(
            key=key, description=_text(fields.get("description", (None,))[0]),
            expected_output=_text(fields.get("expected_output", (None,))[0]), agent=agent, context=context,
            tools=_name_list(fields, "tools", "tasks_yaml", errors, "task", key), line=line,
            human_input=human_input, approval=approval,
            **_run_settings(fields, TASK_RUN_SETTINGS, "tasks_yaml", errors, f"task {key!r}")))
    if not tasks and not any(e.field == "tasks_yaml" for e in errors):
        errors.append(SpecError("tasks_yaml", None, "defines no task"))
    return tasks


def parse_crew(agents_yaml: str, tasks_yaml: str, process: str = "sequential") -> CrewSpec:
    errors: list[SpecError] = []
    agents = parse_agents(agents_yaml, errors)
    agents_parsed = not any(e.field == "agents_yaml" and e.message.startswith(("YAML syntax", "is empty", "must be"))
                            for e in errors)
    tasks = parse_tasks(tasks_yaml, errors, agents, agents_parsed=agents_parsed, process=process)
    texts = [a.role + a.goal + a.backstory for a in agents] + [t.description + t.expected_output for t in tasks]
    placeholders = sorted({m for text in texts for m in _PLACEHOLDER_RE.findall(text)})
    return CrewSpec(agents=agents, tasks=tasks, errors=errors, placeholders=placeholders)


def dump_yaml(mapping: dict) -> str:
    return yaml.safe_dump(mapping, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100)


def parse_combined(text: str) -> tuple[dict | None, list[dict]]:
    """A single crew document ``{name, description, process, model, agents: {...}, tasks: {...}}``
    (the export format) → crew fields with ``agents_yaml``/``tasks_yaml``, or errors with lines."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        return None, [{"field": "crew_yaml", "message": f"{where}YAML syntax error: {getattr(exc, 'problem', exc)}"}]
    if not isinstance(data, dict):
        return None, [{"field": "crew_yaml", "message": "must be a mapping with `agents` and `tasks`"}]
    errors = [{"field": f"crew_yaml.{key}", "message": "is required and must be a mapping"}
              for key in ("agents", "tasks") if not isinstance(data.get(key), dict)]
    if errors:
        return None, errors
    fields = {key: data[key] for key in ("name", "description", "process", "model", "verbose") if key in data}
    fields["agents_yaml"] = dump_yaml(data["agents"])
    fields["tasks_yaml"] = dump_yaml(data["tasks"])
    return fields, []
