"""Every key a CrewAI ``agents.yaml`` / ``tasks.yaml`` / crew definition may carry, and what it
does here: honoured (parsed into the spec and run) or refused (a 400 naming the key and why).

A refused key still parses when its value asks for nothing this platform lacks (``accepts``),
e.g. ``reasoning: false``; any other value is refused. ``docs/crewai.md`` is this table in prose.
"""

from __future__ import annotations

from dataclasses import dataclass

#: value shapes the parser checks: text, boolean, positive integer, integer ≥ 0, list of names,
#: mapping, inline JSON Schema, model (text, or a mapping with ``model``), list of names or mapping
SHAPES = ("text", "bool", "posint", "count", "names", "mapping", "schema", "model")


@dataclass(frozen=True)
class Key:
    name: str
    shape: str
    honoured: bool
    doc: str
    accepts: tuple = ()  # for a refused key: the values that ask for nothing missing here

    def refusal(self) -> str:
        return f"`{self.name}` is not supported here: {self.doc}"


def _h(name: str, shape: str, doc: str) -> Key:
    return Key(name, shape, True, doc)


def _r(name: str, shape: str, doc: str, accepts: tuple = ()) -> Key:
    return Key(name, shape, False, doc, accepts)


AGENT_KEYS: dict[str, Key] = {
    k.name: k
    for k in (
        _h("role", "text", "the agent's role, sent as its system prompt (with `{input}` placeholders)"),
        _h("goal", "text", "the agent's goal, in its system prompt"),
        _h("backstory", "text", "the agent's backstory, in its system prompt"),
        _h(
            "llm",
            "model",
            "the model (`provider/model` or a mapping with `model`); else the crew's, else the organization default",
        ),
        _h("tools", "names", "the organization's tools by name; a name the organization lacks is refused"),
        _h("max_iter", "count", "caps the tool rounds of one task (CrewAI default 25; 0 answers at once)"),
        _h("max_rpm", "posint", "caps the agent's model calls per minute; calls over it wait"),
        _h("max_execution_time", "posint", "seconds one task of this agent may take; over it the task fails"),
        _h(
            "allow_delegation", "bool", "gives the agent CrewAI's delegate-work / ask-question tools over its coworkers"
        ),
        _h("verbose", "bool", "each step is in the execution log and trace whatever the value"),
        _h(
            "knowledge_sources",
            "names",
            "names of the organization's knowledge bases the agent searches; an unknown name is refused",
        ),
        _h("agent_id", "text", "platform extension: binds the agent to a platform agent (usage, logs, socket)"),
        _h("name", "text", "a display name"),
        _h("description", "text", "a display description"),
        _r(
            "max_retry_limit",
            "count",
            "a failed model call is retried by the run's provider policy and the execution's "
            "max_attempts, not per agent",
            accepts=(2,),
        ),
        _r(
            "memory",
            "bool",
            "agent memory (short-term, long-term, entity) is not kept; tasks share output through `context`",
            accepts=(False,),
        ),
        _r("cache", "bool", "tool results are not cached between calls", accepts=(False,)),
        _r(
            "respect_context_window",
            "bool",
            "a prompt over the model's window is not summarised; the provider's error fails the task",
            accepts=(False,),
        ),
        _r("function_calling_llm", "model", "tool calls are made by the agent's own model"),
        _r(
            "system_template",
            "text",
            "custom prompt templates are not applied; the prompt is built from role, goal and backstory",
        ),
        _r("prompt_template", "text", "custom prompt templates are not applied"),
        _r("response_template", "text", "custom prompt templates are not applied"),
        _r("use_system_prompt", "bool", "the system prompt is always used", accepts=(True,)),
        _r("reasoning", "bool", "the reflect-and-plan step before a task is not run", accepts=(False,)),
        _r("max_reasoning_attempts", "posint", "the reasoning step is not run (see `reasoning`)"),
        _r("inject_date", "bool", "the current date is not added to task prompts", accepts=(False,)),
        _r("date_format", "text", "the current date is not added to task prompts (see `inject_date`)"),
        _r("multimodal", "bool", "agents take text only", accepts=(False,)),
        _r("allow_code_execution", "bool", "no code is executed for agents", accepts=(False,)),
        _r(
            "code_execution_mode",
            "text",
            "no code is executed for agents (see `allow_code_execution`)",
            accepts=("safe",),
        ),
        _r("step_callback", "text", "Python callables cannot be named from YAML; use a webhook subscription"),
        _r("embedder", "mapping", "embeddings are the knowledge app's; agents take no embedder of their own"),
        _r("knowledge", "mapping", "use `knowledge_sources` with knowledge base names"),
    )
}

TASK_KEYS: dict[str, Key] = {
    k.name: k
    for k in (
        _h("description", "text", "what to do (with `{input}` placeholders)"),
        _h("expected_output", "text", "what to hand back, sent with the description"),
        _h(
            "agent",
            "text",
            "the agent (key in agents.yaml) that does the task; the hierarchical manager picks when absent",
        ),
        _h("context", "names", "earlier tasks whose output this task reads (default: the previous task's)"),
        _h("tools", "names", "tools added to the agent's for this task"),
        _h(
            "async_execution",
            "bool",
            "runs concurrently with the tasks around it; a task whose `context` names it waits",
        ),
        _h(
            "output_json",
            "text",
            "name of an organization JSON Schema (`/api/v1/schemas`); the answer is JSON valid "
            "against it, kept as the task's `json_output`",
        ),
        _h("output_pydantic", "text", "same as `output_json` (the model's JSON Schema, by name)"),
        _h("output_schema", "schema", "platform extension: an inline JSON Schema for the answer"),
        _h(
            "output_file", "text", "the output is stored through the files app under this path; its id is in the result"
        ),
        _h("create_directory", "bool", "with `output_file`: its directory part is kept as the stored path prefix"),
        _h("markdown", "bool", "asks the model to answer in Markdown"),
        _h(
            "guardrail",
            "text",
            "a sentence a model checks the output against, or a builtin check "
            "(`json_schema:<name>`, `regex:<pattern>`, `max_words:<n>`, `not_contains:<text>`); a "
            "failure retries the task with the feedback",
        ),
        _h(
            "guardrail_max_retries",
            "count",
            "retries after a failed guardrail or invalid structured output (default 3)",
        ),
        _h("callback", "text", "name of an outbound webhook subscription told when the task ends"),
        _h("human_input", "bool", "a person approves (or edits) the output before the run goes on"),
        _h("config", "mapping", "CrewAI's task config: its keys are read as task keys (same rules)"),
        _h("name", "text", "a display name"),
        _h("approval", "mapping", "platform extension, with `human_input`: who approves, timeout, default, question"),
        _r("converter_cls", "text", "Python classes cannot be named from YAML; use `output_json`"),
    )
}

CREW_KEYS: dict[str, Key] = {
    k.name: k
    for k in (
        _h("process", "text", "`sequential` (tasks in order) or `hierarchical` (a manager delegates)"),
        _h("planning", "bool", "a planning step runs first and its plan is added to each task"),
        _h("manager_llm", "model", "the hierarchical manager's model"),
        _h("manager_agent", "text", "key of the agent in agents.yaml that manages a hierarchical crew"),
        _h("verbose", "bool", "each step is in the execution log and trace whatever the value"),
        _h("name", "text", "the crew's name"),
        _h("description", "text", "the crew's description"),
        _h("model", "model", "the default model of agents that name none"),
        _r(
            "memory",
            "bool",
            "crew memory (short-term, long-term, entity) is not kept; tasks share output through `context`",
            accepts=(False,),
        ),
        _h("planning_llm", "model", "the planning step's model (else the manager's, else the crew's)"),
        _h("max_rpm", "posint", "caps the model calls per minute of all the crew's agents together"),
        _r("cache", "bool", "tool results are not cached between calls", accepts=(False,)),
        _r("full_output", "bool", "the result always carries every task's output", accepts=(True, False)),
        _r("share_crew", "bool", "nothing is sent to CrewAI", accepts=(False,)),
        _r("output_log_file", "text", "the execution log is kept by the platform (`/execution-logs/{id}`)"),
        _r("embedder", "mapping", "embeddings are the knowledge app's"),
        _h("knowledge_sources", "names", "knowledge bases every agent of the crew searches (`knowledge_search`)"),
    )
}

KEYS_BY_KIND = {"agent": AGENT_KEYS, "task": TASK_KEYS, "crew": CREW_KEYS}

#: the keys issue 22 names, for the counts in docs/crewai.md
ISSUE_AGENT_KEYS = (
    "role",
    "goal",
    "backstory",
    "llm",
    "tools",
    "max_iter",
    "max_rpm",
    "max_execution_time",
    "max_retry_limit",
    "allow_delegation",
    "verbose",
    "memory",
    "respect_context_window",
    "function_calling_llm",
    "system_template",
    "prompt_template",
    "response_template",
    "reasoning",
    "max_reasoning_attempts",
    "inject_date",
    "date_format",
    "knowledge_sources",
    "multimodal",
    "code_execution_mode",
)
ISSUE_TASK_KEYS = (
    "description",
    "expected_output",
    "agent",
    "context",
    "tools",
    "async_execution",
    "output_json",
    "output_pydantic",
    "output_file",
    "create_directory",
    "human_input",
    "markdown",
    "guardrail",
    "guardrail_max_retries",
    "callback",
    "config",
)


def table() -> list[dict]:
    """The key table (kind, key, honoured, what it does / why refused, accepted values)."""
    return [
        {"kind": kind, "key": k.name, "honoured": k.honoured, "doc": k.doc, "accepts": list(k.accepts)}
        for kind, keys in KEYS_BY_KIND.items()
        for k in keys.values()
    ]
