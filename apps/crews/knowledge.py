"""CrewAI's ``knowledge_sources`` on an agent: the agent gets the ``knowledge_search`` tool over the
organization's knowledge bases of those names, served in process (``LocalTool``); every chunk it
returns is cited in the run's result, as with the builtin tool bound to a platform agent."""

from __future__ import annotations

import json

from apps.agents.tools.base import ToolContext, ToolError
from apps.knowledge.models import KnowledgeBase
from apps.knowledge.tools import knowledge_search
from apps.runs.runner import LocalTool, RunContext, RunFailed

TOOL = "knowledge_search"


def knowledge_tools(ctx: RunContext, agent_key: str, names: list[str]) -> dict[str, LocalTool]:
    """``{"knowledge_search": tool}`` over the named knowledge bases (empty when none is named); a
    name the organization no longer has fails the run before any model call of the agent."""
    if not names:
        return {}
    bases = {kb.name: kb for kb in KnowledgeBase.objects.for_org(ctx.organization).filter(name__in=names)}
    if missing := [n for n in names if n not in bases]:
        raise RunFailed(
            f"agent {agent_key!r}: knowledge_sources names knowledge bases the organization does not "
            f"have: {', '.join(missing)}",
            type="knowledge_sources",
        )
    context = ToolContext(
        organization=ctx.organization,
        configuration={"knowledge_base_ids": [str(kb.pk) for kb in bases.values()]},
        citations=ctx.citations,
    )

    def run(arguments: dict) -> str:
        try:
            return json.dumps(knowledge_search(dict(arguments or {}), context), default=str)
        except ToolError as exc:
            return f"error: {exc}"

    spec = {
        "name": TOOL,
        "description": "Search the knowledge sources of this agent "
        f"({', '.join(names)}); returns the best matching passages with their chunk ids (cite them).",
        "parameters": {
            "type": "object",
            "required": ["query"],
            "properties": {
                "query": {"type": "string", "description": "What to look for"},
                "top_k": {"type": "integer", "minimum": 1, "maximum": 20},
                "mode": {"type": "string", "enum": ["hybrid", "vector", "text"]},
            },
        },
    }
    return {TOOL: LocalTool(spec=spec, run=run)}
