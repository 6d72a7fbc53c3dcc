"""CrewAI's YAML format: parse ``agents_yaml`` / ``tasks_yaml`` (and the crew's settings), report
every problem with its line, and turn a valid pair into the ordered plan the runner executes.

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

Every other CrewAI key is in ``apps.crews.keys``: honoured ones parse into the dataclasses below
(same names as CrewAI's attributes), refused ones are errors naming the key and why.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

import jsonschema
import yaml

from apps.crews.keys import AGENT_KEYS, CREW_KEYS, TASK_KEYS, Key
from apps.runs.prompts import interpolate as interpolate  # re-exported, as the two below: crews read inputs with them
from apps.runs.prompts import missing_inputs as missing_inputs
from apps.runs.prompts import placeholders_of as placeholders_of

AGENT_REQUIRED = ("role", "goal", "backstory")
TASK_REQUIRED = ("description", "expected_output")
APPROVAL_KEYS = ("role", "user", "timeout_seconds", "default", "question")
GUARDRAIL_BUILTINS = ("json_schema", "regex", "max_words", "not_contains")
_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


@dataclass
class SpecError:
    field: str  # "agents_yaml" | "tasks_yaml" | "config" | "inputs"
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
    name: str = ""
    description: str = ""
    max_iter: int = 25
    max_rpm: int | None = None
    max_execution_time: int | None = None  # seconds
    max_retry_limit: int = 2
    allow_delegation: bool = False
    verbose: bool = False
    memory: bool = False
    respect_context_window: bool = False
    function_calling_llm: str = ""
    system_template: str = ""
    prompt_template: str = ""
    response_template: str = ""
    reasoning: bool = False
    max_reasoning_attempts: int | None = None
    inject_date: bool = False
    date_format: str = "%Y-%m-%d"
    knowledge_sources: list[str] = field(default_factory=list)  # knowledge base names
    multimodal: bool = False
    code_execution_mode: str = "safe"

    def as_dict(self) -> dict:
        return {
            "key": self.key,
            "role": self.role,
            "goal": self.goal,
            "backstory": self.backstory,
            "llm": self.llm,
            "tools": self.tools,
            "agent_id": self.agent_id,
            "max_iter": self.max_iter,
            "max_rpm": self.max_rpm,
            "max_execution_time": self.max_execution_time,
            "allow_delegation": self.allow_delegation,
            "verbose": self.verbose,
            "knowledge_sources": self.knowledge_sources,
        }


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
    name: str = ""
    async_execution: bool = False
    output_json: str | None = None  # name of an organization JSON Schema
    output_pydantic: str | None = None  # same, CrewAI's pydantic model by name
    output_schema: dict | None = None  # inline JSON Schema
    output_file: str = ""
    create_directory: bool = True
    markdown: bool = False
    guardrail: str = ""
    guardrail_max_retries: int = 3
    callback: str = ""  # name of an outbound webhook subscription
    config: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "key": self.key,
            "description": self.description,
            "expected_output": self.expected_output,
            "agent": self.agent,
            "context": self.context,
            "tools": self.tools,
            "human_input": self.human_input,
            "approval": self.approval,
            "async_execution": self.async_execution,
            "output_json": self.output_json,
            "output_pydantic": self.output_pydantic,
            "output_schema": self.output_schema,
            "output_file": self.output_file,
            "create_directory": self.create_directory,
            "markdown": self.markdown,
            "guardrail": self.guardrail,
            "guardrail_max_retries": self.guardrail_max_retries,
            "callback": self.callback,
        }


@dataclass
class CrewSpec:
    agents: list[AgentSpec]
    tasks: list[TaskSpec]
    errors: list[SpecError]
    placeholders: list[str] = field(default_factory=list)
    process: str = "sequential"
    planning: bool = False
    manager_llm: str = ""
    manager_agent: str | None = None  # key of an agent in agents.yaml
    memory: bool = False
    crew_knowledge_sources: list[str] = field(default_factory=list)  # knowledge bases every agent searches

    @property
    def valid(self) -> bool:
        return not self.errors

    def texts(self) -> list[str]:
        """Every text whose ``{name}`` placeholders the run's inputs fill."""
        return [t for a in self.agents for t in (a.role, a.goal, a.backstory)] + [
            t for task in self.tasks for t in (task.description, task.expected_output, task.output_file)
        ]

    def missing_inputs(self, inputs: dict | None) -> list[str]:
        return missing_inputs(self.texts(), inputs or {})

    @property
    def knowledge_sources(self) -> list[str]:
        return sorted({name for a in self.agents for name in a.knowledge_sources} | set(self.crew_knowledge_sources))

    @property
    def tool_names(self) -> list[str]:
        return sorted({name for a in self.agents for name in a.tools} | {n for t in self.tasks for n in t.tools})

    @property
    def schema_names(self) -> list[str]:
        return sorted({n for t in self.tasks for n in (t.output_json, t.output_pydantic) if n})

    @property
    def callbacks(self) -> list[str]:
        return sorted({t.callback for t in self.tasks if t.callback})


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
            errors.append(
                SpecError(field_name, line, f"{what} name {key!r} must be an identifier (letters, digits, _ -)")
            )
            continue
        if key in seen:
            errors.append(SpecError(field_name, line, f"{what} {key!r} is defined twice (first on line {seen[key]})"))
            continue
        seen[key] = line
        if not isinstance(value_node, yaml.MappingNode):
            errors.append(
                SpecError(field_name, _line(value_node) or line, f"{what} {key!r} must be a mapping of fields")
            )
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


# --- values by shape ---------------------------------------------------------------------------


def _shape_error(shape: str, value):
    """(value in the spec's form, None) or (None, what is wrong)."""
    if shape == "text":
        if isinstance(value, (dict, list)):
            return None, "must be text"
        return _text(value), None
    if shape == "bool":
        return (value, None) if isinstance(value, bool) else (None, "must be true or false")
    if shape in ("posint", "count"):
        low = 1 if shape == "posint" else 0
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            return None, f"must be an integer ≥ {low}"
        return value, None
    if shape == "names":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
            return None, "must be a list of names"
        return [item.strip() for item in value], None
    if shape == "mapping":
        return (value, None) if isinstance(value, dict) else (None, "must be a mapping")
    if shape == "schema":
        return _schema_error(value)
    if shape == "model":
        if isinstance(value, dict):
            value = value.get("model")
        if not isinstance(value, str) or not value.strip():
            return None, "must be a model name (or a mapping with `model`)"
        return value.strip(), None
    raise ValueError(shape)


def _schema_error(value):
    if not isinstance(value, dict):
        return None, "must be a JSON Schema object"
    try:
        jsonschema.validators.validator_for(value).check_schema(value)
    except jsonschema.SchemaError as exc:
        return None, f"is not a valid JSON Schema: {exc.message}"
    return value, None


def read_keys(fields: dict, known: dict[str, Key], skip: tuple, report) -> dict:
    """Values of ``fields`` ({key: (value, line)}) checked against the key table. ``report(line,
    message)`` receives each unknown key, refused key and bad value; the result holds good values."""
    values = {}
    for name, (value, line) in fields.items():
        if name in skip:
            continue
        key = known.get(name)
        if key is None:
            report(line, f"unknown field {name!r} (not a CrewAI key this platform knows; see docs/crewai.md)")
            continue
        if value is None:
            continue
        if not key.honoured and value not in key.accepts:
            report(line, key.refusal())
            continue
        checked, problem = _shape_error(key.shape, value)
        if problem:
            report(line, f"`{name}` {problem}")
            continue
        values[name] = checked
    return values


def _guardrail_error(text: str) -> str | None:
    kind, sep, arg = text.partition(":")
    if not sep or kind not in GUARDRAIL_BUILTINS:
        return None  # a sentence, checked by a model
    if not arg.strip():
        return f"`guardrail` {kind}: needs a value after the colon"
    if kind == "regex":
        try:
            re.compile(arg)
        except re.error as exc:
            return f"`guardrail` regex is invalid: {exc}"
    if kind == "max_words" and not (arg.strip().isdigit() and int(arg) > 0):
        return "`guardrail` max_words: needs a positive integer"
    return None


# --- agents, tasks, the crew -------------------------------------------------------------------


def parse_agents(text: str, errors: list[SpecError]) -> list[AgentSpec]:
    node = _compose(text, "agents_yaml", errors)
    if node is None:
        return []
    agents = []
    for key, line, fields in _entries(node, "agents_yaml", errors, "agent"):
        missing = [name for name in AGENT_REQUIRED if not _text(fields.get(name, (None,))[0])]
        if missing:
            errors.append(SpecError("agents_yaml", line, f"agent {key!r} is missing {', '.join(missing)}"))

        def report(fline, message, key=key):
            errors.append(SpecError("agents_yaml", fline, f"agent {key!r}: {message}"))

        values = read_keys(fields, AGENT_KEYS, (), report)
        agent_id = values.pop("agent_id", None) or None
        if agent_id:
            try:
                agent_id = str(uuid.UUID(agent_id))
            except ValueError:
                report(fields["agent_id"][1], "agent_id is not a UUID")
                agent_id = None
        for name in AGENT_REQUIRED:
            values[name] = values.get(name, "")
        values.pop("cache", None)
        values.pop("use_system_prompt", None)
        values.pop("allow_code_execution", None)
        agents.append(AgentSpec(key=key, agent_id=agent_id, line=line, **values))
    if not agents and not any(e.field == "agents_yaml" for e in errors):
        errors.append(SpecError("agents_yaml", None, "defines no agent"))
    return agents


def _task_fields(fields: dict, report) -> dict:
    """CrewAI's ``config``: its keys count as the task's own (the task's explicit keys win)."""
    config, config_line = fields.get("config", (None, None))
    if isinstance(config, dict):
        for name, value in config.items():
            if name == "config":
                report(config_line, "`config` cannot nest another `config`")
            elif str(name) not in fields:
                fields = {**fields, str(name): (value, config_line)}
    return fields


def _approval(value, line, report) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict) or set(value) - set(APPROVAL_KEYS):
        report(line, f"`approval` must be a mapping of {', '.join(APPROVAL_KEYS)}")
        return {}
    timeout = value.get("timeout_seconds")
    if value.get("default", "reject") not in ("approve", "reject") or not (
        timeout is None or (isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > 0)
    ):
        report(line, "approval `default` must be approve or reject, `timeout_seconds` a positive number")
        return {}
    return value


def parse_tasks(
    text: str, errors: list[SpecError], agents: list[AgentSpec], *, agents_parsed: bool, process: str = "sequential"
) -> list[TaskSpec]:
    node = _compose(text, "tasks_yaml", errors)
    if node is None:
        return []
    agent_keys = {a.key for a in agents}
    tasks: list[TaskSpec] = []
    for key, line, fields in _entries(node, "tasks_yaml", errors, "task"):

        def report(fline, message, key=key):
            errors.append(SpecError("tasks_yaml", fline, f"task {key!r}: {message}"))

        fields = _task_fields(fields, report)
        missing = [name for name in TASK_REQUIRED if not _text(fields.get(name, (None,))[0])]
        if missing:
            errors.append(SpecError("tasks_yaml", line, f"task {key!r} is missing {', '.join(missing)}"))
        values = read_keys(fields, TASK_KEYS, ("approval", "human_input"), report)
        values.pop("converter_cls", None)
        agent = values.pop("agent", "") or None
        agent_line = fields.get("agent", (None, None))[1]
        if agent is None and process != "hierarchical":
            errors.append(
                SpecError("tasks_yaml", line, f"task {key!r} names no agent (required by the sequential process)")
            )
        elif agent is not None and agents_parsed and agent not in agent_keys:
            known = ", ".join(sorted(agent_keys)) or "none"
            errors.append(
                SpecError(
                    "tasks_yaml", agent_line or line, f"task {key!r} names unknown agent {agent!r} (agents: {known})"
                )
            )
        earlier = {t.key for t in tasks}
        for ref in values.get("context", []):
            if ref not in earlier:
                report(fields["context"][1], f"context names {ref!r}, which is not an earlier task")
        human_input, human_line = fields.get("human_input", (False, None))
        if not isinstance(human_input, bool):
            report(human_line, "`human_input` must be true or false")
            human_input = False
        if values.get("guardrail") and (problem := _guardrail_error(values["guardrail"])):
            report(fields["guardrail"][1], problem)
        if sum(1 for name in ("output_json", "output_pydantic", "output_schema") if values.get(name)) > 1:
            report(line, "give one of `output_json`, `output_pydantic` and `output_schema`")
        for name in TASK_REQUIRED:
            values[name] = values.get(name, "")
        tasks.append(
            TaskSpec(
                key=key,
                agent=agent,
                line=line,
                human_input=human_input,
                approval=_approval(fields.get("approval", (None,))[0], fields.get("approval", (0, None))[1], report),
                **values,
            )
        )
    if not tasks and not any(e.field == "tasks_yaml" for e in errors):
        errors.append(SpecError("tasks_yaml", None, "defines no task"))
    return tasks


def crew_settings(
    settings: dict | None, errors: list[SpecError], *, field_name: str = "config", strict: bool = False
) -> dict:
    """The crew-level CrewAI keys (process, planning, manager_llm, manager_agent, memory, …) of a
    crew's ``config`` (or of crew.yaml / crew.jsonc with ``strict``: there an unknown key is refused)."""
    fields = {str(k): (v, None) for k, v in (settings or {}).items() if strict or str(k) in CREW_KEYS}

    def report(_line, message):
        errors.append(SpecError(field_name, None, f"crew: {message}"))

    values = read_keys(fields, CREW_KEYS, (), report)
    if values.get("process") not in (None, "sequential", "hierarchical"):
        report(None, "`process` must be sequential or hierarchical")
        values.pop("process")
    return values


def parse_crew(
    agents_yaml: str, tasks_yaml: str, process: str = "sequential", settings: dict | None = None
) -> CrewSpec:
    """The crew's plan; ``settings`` are its crew-level keys (``Crew.config``: planning,
    manager_llm, manager_agent, memory)."""
    errors: list[SpecError] = []
    crew = crew_settings(settings, errors)
    agents = parse_agents(agents_yaml, errors)
    agents_parsed = not any(
        e.field == "agents_yaml" and e.message.startswith(("YAML syntax", "is empty", "must be")) for e in errors
    )
    tasks = parse_tasks(tasks_yaml, errors, agents, agents_parsed=agents_parsed, process=process)
    manager_agent = crew.get("manager_agent") or None
    if manager_agent and agents_parsed and manager_agent not in {a.key for a in agents}:
        errors.append(SpecError("config", None, f"crew: `manager_agent` names unknown agent {manager_agent!r}"))
    if (manager_agent or crew.get("manager_llm")) and process != "hierarchical":
        errors.append(SpecError("config", None, "crew: `manager_llm` / `manager_agent` need the hierarchical process"))
    spec = CrewSpec(
        agents=agents,
        tasks=tasks,
        errors=errors,
        process=process,
        planning=crew.get("planning", False),
        manager_llm=crew.get("manager_llm", ""),
        manager_agent=manager_agent,
        memory=crew.get("memory", False),
        crew_knowledge_sources=list(crew.get("knowledge_sources") or []),
    )
    spec.placeholders = sorted({name for text in spec.texts() for name in placeholders_of(text)})
    return spec


def parse_definition(definition: dict) -> CrewSpec:
    """The spec of a crew execution's ``definition`` (what the run engine stored at create)."""
    return parse_crew(
        definition.get("agents_yaml", ""),
        definition.get("tasks_yaml", ""),
        definition.get("process") or "sequential",
        definition.get("config") or {},
    )


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
    errors = [
        {"field": f"crew_yaml.{key}", "message": "is required and must be a mapping"}
        for key in ("agents", "tasks")
        if not isinstance(data.get(key), dict)
    ]
    if errors:
        return None, errors
    fields = {key: data[key] for key in ("name", "description", "process", "model", "verbose") if key in data}
    config = {key: data[key] for key in ("planning", "manager_llm", "manager_agent", "memory") if key in data}
    if config:
        fields["config"] = config
    fields["agents_yaml"] = dump_yaml(data["agents"])
    fields["tasks_yaml"] = dump_yaml(data["tasks"])
    return fields, []
