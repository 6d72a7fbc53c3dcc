"""The builtin agent tool ``knowledge_search`` (alias ``knowledge_base_tool``): searches
the knowledge bases bound to the agent — ``knowledge_base_ids`` in the agent's ``config``, else in
the tool's configuration — and cites every chunk it returns (the run keeps the chunk ids)."""

from __future__ import annotations

from apps.agents.tools.base import BuiltinTool, ToolContext, ToolError, register
from apps.knowledge import embedders, search, selectors

MAX_RESULTS = 20
NAMES = ("knowledge_search", "knowledge_base_tool")


def bound_knowledge_base_ids(context: ToolContext) -> list:
    agent_config = getattr(context.agent, "config", None) or {}
    ids = agent_config.get("knowledge_base_ids") or (context.configuration or {}).get("knowledge_base_ids") or []
    return list(ids) if isinstance(ids, (list, tuple)) else [ids]


def knowledge_search(arguments: dict, context: ToolContext):
    bound = bound_knowledge_base_ids(context)
    if not bound:
        raise ToolError("no knowledge base is bound to this agent (set knowledge_base_ids in its config)")
    wanted = arguments.get("knowledge_base_id")
    if wanted and str(wanted) not in {str(i) for i in bound}:
        raise ToolError(f"knowledge base {wanted} is not bound to this agent")
    bases = selectors.knowledge_bases_by_ids(organization=context.organization, ids=[wanted] if wanted else bound)
    if not bases:
        raise ToolError("the agent's knowledge bases no longer exist")
    try:
        hits = search.search(
            knowledge_bases=bases,
            query=str(arguments["query"]),
            top_k=int(arguments.get("top_k") or 5),
            mode=arguments.get("mode") or "hybrid",
        )
    except embedders.EmbeddingUnavailable as exc:
        raise ToolError(str(exc)) from exc
    for hit in hits:
        context.citations.append(
            {
                "chunk_id": hit.chunk_id,
                "document_id": hit.document_id,
                "document_name": hit.document_name,
                "score": hit.score,
            }
        )
    return {
        "results": [
            {"chunk_id": h.chunk_id, "document_name": h.document_name, "text": h.text, "score": h.score} for h in hits
        ]
    }


for _name in NAMES:
    register(
        BuiltinTool(
            name=_name,
            description="Search the organization's knowledge bases bound to this agent; returns the best matching "
            "passages with their chunk ids (cite them).",
            parameters_schema={
                "type": "object",
                "required": ["query"],
                "additionalProperties": False,
                "properties": {
                    "query": {"type": "string", "minLength": 1, "maxLength": 4000},
                    "top_k": {"type": "integer", "minimum": 1, "maximum": MAX_RESULTS},
                    "mode": {"type": "string", "enum": ["hybrid", "vector", "text"]},
                    "knowledge_base_id": {"type": "string", "format": "uuid"},
                },
            },
            config_schema={
                "type": "object",
                "additionalProperties": False,
                "properties": {"knowledge_base_ids": {"type": "array", "items": {"type": "string", "format": "uuid"}}},
            },
            default_configuration={},
            run=knowledge_search,
        )
    )
