"""CrewAI's coworker tools for agents with ``allow_delegation`` (and the hierarchical manager):
``delegate_work_to_coworker`` hands a task to another agent of the crew and returns its answer;
``ask_question_to_coworker`` asks one a question. Served in process (``LocalTool``)."""

from __future__ import annotations

from collections.abc import Callable

from apps.runs.runner import AgentProfile, LocalTool

DELEGATE = "delegate_work_to_coworker"
ASK = "ask_question_to_coworker"


def _spec(name: str, what: str, coworkers: list[AgentProfile]) -> dict:
    roles = ", ".join(c.role or c.name for c in coworkers)
    description = (
        f"{'Delegate a specific task to' if name == DELEGATE else 'Ask a specific question to'} one of "
        f"the following coworkers: {roles}. Give all the context they need: they know nothing "
        "about your work. Name the coworker by role."
    )
    return {
        "name": name,
        "description": description,
        "parameters": {
            "type": "object",
            "properties": {
                what: {"type": "string", "description": f"The {what} for the coworker"},
                "context": {"type": "string", "description": "Everything the coworker needs to know"},
                "coworker": {"type": "string", "description": f"One of: {roles}"},
            },
            "required": [what, "context", "coworker"],
        },
    }


def find_coworker(name: str, coworkers: list[AgentProfile]) -> AgentProfile | None:
    wanted = (name or "").strip().strip("\"'").casefold()
    return next(
        (c for c in coworkers if wanted in {(c.role or "").casefold(), c.key.casefold(), (c.name or "").casefold()}),
        None,
    )


def coworker_tools(coworkers: list[AgentProfile], work: Callable[[AgentProfile, str], str]) -> dict[str, LocalTool]:
    """The two tools over ``coworkers``; ``work(coworker, prompt)`` runs the coworker and returns
    its answer. An unknown coworker is an error the model sees (and may correct)."""

    def tool(name: str, what: str) -> LocalTool:
        def run(arguments: dict) -> str:
            coworker = find_coworker(str(arguments.get("coworker") or ""), coworkers)
            if coworker is None:
                roles = ", ".join(c.role or c.name for c in coworkers)
                return f"error: no coworker named {arguments.get('coworker')!r}; choose one of: {roles}"
            request = str(arguments.get(what) or "").strip()
            context = str(arguments.get("context") or "").strip()
            return work(
                coworker, request + (f"\n\nThis is the context you're working with:\n{context}" if context else "")
            )

        return LocalTool(spec=_spec(name, what, coworkers), run=run)

    if not coworkers:
        return {}
    return {DELEGATE: tool(DELEGATE, "task"), ASK: tool(ASK, "question")}
