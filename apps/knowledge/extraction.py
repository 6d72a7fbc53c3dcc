"""Entities and relationships of a document, extracted by an agent (issue 23 item 7).

``extraction_start`` runs the agent on the document's text as an agent task (a run of the run
engine, on a worker); the task asks for one JSON object ``{entities: [{key, type, label,
properties}], relationships: [{source, target, type, properties}]}`` (``source``/``target`` are
entity keys). When the run completes, its proposal is written to the graph (``extraction_apply``,
through ``graph.row_create``: audited, seed 004 events) — at once, or, when the organization's
setting ``knowledge_extraction_review`` is on, only when a developer applies the reviewed proposal
(``POST knowledge-graph/extractions/{execution_id}/apply``, optionally edited).
"""

from __future__ import annotations

import json
import re

from django.db import transaction
from rest_framework import exceptions

from apps.knowledge import graph
from apps.knowledge.models import Chunk, Document, Entity
from apps.knowledge.tasks import apply_extraction
from apps.runs.models import Execution, ExecutionKind
from apps.runs.prompts import literal
from apps.runs.registry import on_executions_terminal
from apps.runs.services import execution_create
from kai_platform.api.errors import Conflict

MAX_TEXT_CHARS = 20_000
MAX_ENTITIES = 200
MAX_RELATIONSHIPS = 400
MARK = "knowledge_extraction"

INSTRUCTIONS = (
    "Extract the entities (people, organizations, places, things, concepts) and the relationships "
    "between them from the document below. Answer with one JSON object and nothing else, with two "
    'lists: "entities" (objects with "key", "type", "label", "properties") and "relationships" '
    '(objects with "source", "target", "type", "properties", where source and target are keys of '
    "the entities).\n\nDocument {name}:\n{text}"
)


def requires_review(organization) -> bool:
    return bool((organization.settings or {}).get("knowledge_extraction_review"))


def document_text(document: Document) -> str:
    chunks = Chunk.objects.for_org(document.organization).filter(document=document).order_by("position")
    text, size = [], 0
    for chunk in chunks.values_list("text", flat=True).iterator():
        text.append(chunk)
        size += len(chunk)
        if size >= MAX_TEXT_CHARS:
            break
    return ("\n".join(text) or document.text)[:MAX_TEXT_CHARS]


def extraction_start(*, organization, actor, document: Document, agent) -> Execution:
    if document.status != "READY":
        raise exceptions.ValidationError({"document_id": ["The document is not READY (ingest it first)."]})
    values = {"name": document.name, "text": document_text(document)}
    description = re.sub(r"\{(name|text)\}", lambda m: literal(values[m.group(1)]), INSTRUCTIONS)
    return execution_create(
        organization=organization,
        actor=actor,
        kind=ExecutionKind.AGENT_TASK,
        agent=agent,
        run_name=f"Extract entities: {document.name}"[:300],
        definition={
            "name": "knowledge extraction",
            "description": description,
            "expected_output": "one JSON object: entities and relationships",
            MARK: {"document_id": str(document.pk), "review": requires_review(organization)},
        },
    )


def _json_object(text: str) -> dict:
    start, end = text.find("{"), text.rfind("}")
    try:
        value = json.loads(text[start : end + 1]) if 0 <= start < end else None
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise exceptions.ValidationError({"output": ["The agent's answer holds no JSON object."]})
    return value


def proposal_parse(output) -> dict:
    """The agent's answer → ``{entities, relationships}`` (checked shapes, bounded, unknown keys dropped)."""
    raw = output if isinstance(output, dict) else _json_object(str(output or ""))
    entities: list[dict] = []
    keys: set[str] = set()
    for item in (raw.get("entities") or [])[:MAX_ENTITIES]:
        if not isinstance(item, dict) or not str(item.get("label") or "").strip():
            continue
        key = str(item.get("key") or item["label"])
        keys.add(key)
        entities.append(
            {
                "key": key,
                "type": str(item.get("type") or "thing")[:100],
                "label": str(item["label"]).strip()[:500],
                "properties": item.get("properties") if isinstance(item.get("properties"), dict) else {},
            }
        )
    relationships: list[dict] = [
        {
            "source": str(item["source"]),
            "target": str(item["target"]),
            "type": str(item.get("type") or "related_to")[:100],
            "properties": item.get("properties") if isinstance(item.get("properties"), dict) else {},
        }
        for item in (raw.get("relationships") or [])[:MAX_RELATIONSHIPS]
        if isinstance(item, dict) and str(item.get("source")) in keys and str(item.get("target")) in keys
    ]
    return {"entities": entities, "relationships": relationships}


def extraction_apply(*, organization, actor, proposal: object, document: Document | None) -> dict:
    """Write a proposal (the agent's answer, or a reviewer's edited object; see ``proposal_parse``):
    an entity of the same type and label in the organization is reused, not doubled."""
    parsed = proposal_parse(proposal)
    ids: dict[str, object] = {}
    created: dict[str, list[str]] = {"entities": [], "relationships": []}
    with transaction.atomic():
        for item in parsed["entities"]:
            existing = Entity.objects.for_org(organization).filter(type=item["type"], label=item["label"]).first()
            if existing is None:
                existing = graph.row_create(
                    graph.ENTITY,
                    organization=organization,
                    actor=actor,
                    data={
                        "type": item["type"],
                        "label": item["label"],
                        "properties": item["properties"],
                        "document_id": document.pk if document else None,
                    },
                )
                created["entities"].append(str(existing.pk))
            ids[item["key"]] = existing.pk
        for item in parsed["relationships"]:
            rel = graph.row_create(
                graph.RELATIONSHIP,
                organization=organization,
                actor=actor,
                data={
                    "source_id": ids[item["source"]],
                    "target_id": ids[item["target"]],
                    "type": item["type"],
                    "properties": item["properties"],
                },
            )
            created["relationships"].append(str(rel.pk))
    return created


def extraction_of(*, organization, execution_id) -> Execution:
    run = Execution.objects.for_org(organization).filter(pk=execution_id, kind=ExecutionKind.AGENT_TASK).first()
    if run is None or MARK not in (run.definition or {}):
        raise exceptions.NotFound("No such extraction.")
    return run


def extraction_apply_run(*, run: Execution, actor, proposal: dict | None = None) -> dict:
    """Apply a completed extraction run (its own proposal, or the reviewer's edited one) once."""
    if run.status != "COMPLETED":
        raise exceptions.ValidationError({"execution_id": [f"The extraction run is {run.status}, not COMPLETED."]})
    with transaction.atomic():
        run = Execution.objects.select_for_update().get(pk=run.pk)
        mark = dict(run.definition[MARK])
        if mark.get("applied"):
            raise Conflict("This extraction was applied already.")
        document = Document.objects.for_org(run.organization).filter(pk=mark.get("document_id")).first()
        result = run.result
        output = proposal if proposal is not None else (result.get("output") if isinstance(result, dict) else result)
        created = extraction_apply(organization=run.organization, actor=actor, proposal=output, document=document)
        run.definition = {**run.definition, MARK: {**mark, "applied": True, "created": created}}
        run.save(update_fields=["definition"])
    return created


@on_executions_terminal(ExecutionKind.AGENT_TASK)
def _on_extractions_done(ended: list[dict]) -> None:
    """Completed extractions without review are written by a task (hooks stay quick); one read
    for the runs a worker ended together."""
    ids = [run["execution_id"] for run in ended if run["status"] == "COMPLETED"]
    if not ids:
        return
    for pk, definition in Execution.objects.filter(pk__in=ids).values_list("pk", "definition"):
        mark = (definition or {}).get(MARK) if isinstance(definition, dict) else None
        if mark and not mark.get("review"):
            apply_extraction.delay(str(pk))
