"""The workflow step type ``knowledge``: search knowledge bases for ``query`` (``{{ }}`` templates
allowed) and hand the chunks to the steps that depend on it (its output
``{"query", "chunks": [...], "citations": [...]}``; agent steps get it as their context)."""

from __future__ import annotations

import json

from apps.knowledge import embedders, search, selectors
from apps.knowledge.search import MAX_TOP_K, MODES
from apps.runs.registry import register_step_runner
from apps.runs.runner import RunContext, RunFailed
from apps.workflows import conditions
from apps.workflows.definition import STEP_ID_PATTERN, StepType, register_step_type

KNOWLEDGE_STEP_SCHEMA = {
    "type": "object",
    "required": ["id", "type", "query", "knowledge_base_ids"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "pattern": STEP_ID_PATTERN},
        "type": {"const": "knowledge"},
        "name": {"type": "string", "maxLength": 200},
        "query": {"type": "string", "minLength": 1, "maxLength": 4000},
        "knowledge_base_ids": {
            "type": "array",
            "minItems": 1,
            "maxItems": 20,
            "items": {"type": "string", "format": "uuid"},
        },
        "top_k": {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K},
        "mode": {"enum": list(MODES)},
        "filters": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "document_id": {"type": "array", "items": {"type": "string", "format": "uuid"}},
                "metadata": {"type": "object"},
            },
        },
        "depends_on": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        "condition": {"type": "string", "maxLength": conditions.MAX_LENGTH},
        "timeout_ms": {"type": "integer", "minimum": 1},
    },
}

register_step_type(StepType("knowledge", KNOWLEDGE_STEP_SCHEMA, template_keys=("query",)))


@register_step_runner("knowledge")
def run_knowledge_step(ctx: RunContext):
    d = ctx.execution.definition or {}
    query = d.get("query")
    query = query if isinstance(query, str) else json.dumps(query, default=str)
    bases = selectors.knowledge_bases_by_ids(organization=ctx.organization, ids=d.get("knowledge_base_ids"))
    missing = {str(i) for i in d.get("knowledge_base_ids") or []} - {str(kb.pk) for kb in bases}
    if missing:
        raise RunFailed(
            f"knowledge base{'s' if len(missing) > 1 else ''} {', '.join(sorted(missing))} "
            "not found in this organization"
        )
    filters = d.get("filters") or {}
    try:
        hits = search.search(
            knowledge_bases=bases,
            query=query,
            top_k=int(d.get("top_k") or 5),
            mode=d.get("mode") or "hybrid",
            document_ids=filters.get("document_id"),
            metadata=filters.get("metadata"),
        )
    except embedders.EmbeddingUnavailable as exc:
        raise RunFailed(str(exc))
    ctx.citations.extend(
        {"chunk_id": h.chunk_id, "document_id": h.document_id, "document_name": h.document_name, "score": h.score}
        for h in hits
    )
    ctx.recorder.log(f"knowledge step found {len(hits)} chunks", query=query[:500])
    return {"query": query, "chunks": [h.as_dict() for h in hits]}
