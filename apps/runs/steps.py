"""What a run's steps are made of (``apps.runs.runner`` runs them): the profile of an agent as a
run sees it, what a kind's runner may set for a step and what the step returns, and the
exceptions that end a run (``Cancelled``, ``RunFailed``) or park it (``AwaitingApproval``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

MAX_TOOL_ROUNDS = 5
LLM_PARAM_KEYS = ("temperature", "max_tokens", "top_p", "latency_ms", "tokens_per_s", "stop")


class Cancelled(Exception):
    pass


class RunFailed(Exception):
    """A run failed for a reason its owner can act on; the message is the execution's ``error``,
    ``info`` (``{"type": …}`` and details) lands in its ``result.error_info`` for synchronous callers."""

    def __init__(self, message: str, **info):
        super().__init__(message)
        self.info = info


class AwaitingApproval(Exception):
    """A runner stops here until a person answers: ``request`` says what to ask (apps.approvals
    ``approval_request`` keywords), ``checkpoint`` what the run resumes from. Outer layers add to
    the checkpoint as it propagates; ``run`` parks the execution WAITING_FOR_APPROVAL."""

    def __init__(self, request: dict, checkpoint: dict | None = None):
        super().__init__(request.get("question", "approval required"))
        self.request = request
        self.checkpoint = checkpoint or {}


def tool_requires_approval(tool) -> bool:
    return bool((getattr(tool, "configuration", None) or {}).get("requires_approval"))


# --- the profile of an agent as a run sees it --------------------------------------------------


@dataclass
class AgentProfile:
    key: str
    name: str
    role: str = ""
    goal: str = ""
    backstory: str = ""
    model: str = ""
    tools: list[str] = field(default_factory=list)
    agent: Any = None  # agents.Agent when the profile is a platform agent
    instructions: str = ""  # the agent's own system prompt (``config.system_prompt``), after the persona

    @property
    def agent_id(self):
        return self.agent.pk if self.agent is not None else None

    def system_prompt(self) -> str:
        parts = [f"You are {self.role or self.name}."]
        if self.backstory:
            parts.append(self.backstory)
        if self.goal:
            parts.append(f"Your personal goal is: {self.goal}")
        if self.instructions:
            parts.append(self.instructions)
        return "\n".join(parts)

    @classmethod
    def of_agent(cls, agent) -> AgentProfile:
        extra = (agent.config or {}).get("system_prompt") if isinstance(agent.config, dict) else None
        return cls(
            key=str(agent.pk),
            name=agent.name,
            role=agent.role or agent.name,
            goal=agent.goal,
            backstory=agent.backstory,
            model=agent.llm,
            tools=list(agent.tools or []),
            agent=agent,
            instructions=extra if isinstance(extra, str) else "",
        )


@dataclass
class LocalTool:
    """A tool a kind's runner serves in process (not a registered tool row): its model-facing spec
    ``{name, description, parameters}`` and ``run(arguments) -> str``."""

    spec: dict
    run: Callable[[dict], str]


@dataclass
class StepOptions:
    """What a kind's runner may set for one agent step: extra model ``params`` (e.g. a
    ``response_format``), the tool rounds before a final answer is forced, in-process tools, and a
    hook called before each model call (rate limits, deadlines; it raises to stop the step)."""

    params: dict = field(default_factory=dict)
    max_rounds: int = MAX_TOOL_ROUNDS
    local_tools: dict[str, LocalTool] = field(default_factory=dict)
    before_call: Callable[[], None] | None = None


@dataclass
class StepResult:
    text: str
    tokens_in: int = 0
    tokens_out: int = 0
    cost: Decimal = Decimal(0)
    tool_calls: int = 0
    calls: list[dict] = field(default_factory=list)  # each tool call: name, arguments, ok, result


def span_status(exc: Exception) -> str:
    return {Cancelled: "cancelled", AwaitingApproval: "paused"}.get(type(exc), "error")
