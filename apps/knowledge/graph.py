"""The organization's knowledge graph: writes of entities and relationships (each audited and
published as the hub's ``entity_*`` / ``relationship_*`` events, docs/knowledge.md) and the neighbourhood read."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Q
from rest_framework import exceptions

from apps.audit.services import audit_record, snapshot
from apps.events.services import publish
from apps.knowledge.models import Document, Entity, Relationship

MAX_DEPTH = 3
MAX_NEIGHBOURHOOD = 500
ENTITY_FIELDS = ("type", "label", "properties", "document_id")
RELATIONSHIP_FIELDS = ("type", "properties", "source_id", "target_id")


def _user(actor):
    return actor if getattr(actor, "is_authenticated", False) else None


def _entity_data(entity: Entity, actor) -> dict:
    return {
        "entity_id": str(entity.pk),
        "type": entity.type,
        "label": entity.label,
        "created_by": str(entity.created_by_id) if entity.created_by_id else None,
        "updated_by": str(actor.pk) if _user(actor) else None,
        "properties": entity.properties or {},
    }


def _relationship_data(rel: Relationship, actor) -> dict:
    properties = rel.properties or {}
    return {
        "relationship_id": str(rel.pk),
        "source_id": str(rel.source_id),
        "target_id": str(rel.target_id),
        "relationship_type": rel.type,
        "strength": properties.get("strength"),
        "created_by": str(rel.created_by_id) if rel.created_by_id else None,
        "updated_by": str(actor.pk) if _user(actor) else None,
        "properties": properties,
    }


def _publish(organization_id, kind: str, action: str, data: dict, actor) -> None:
    publish(organization_id, f"knowledge.{kind}.{action}", data, actor=_user(actor), component="knowledge")


def _check_document(organization, document_id) -> None:
    if document_id and not Document.objects.for_org(organization).filter(pk=document_id).exists():
        raise exceptions.ValidationError({"document_id": [f"No document {document_id} in this organization."]})


def _entities_of(organization, values: dict) -> None:
    ids = {str(values[k]) for k in ("source_id", "target_id") if k in values}
    found = {str(pk) for pk in Entity.objects.for_org(organization).filter(pk__in=ids).values_list("pk", flat=True)}
    for key in ("source_id", "target_id"):
        if key in values and str(values[key]) not in found:
            raise exceptions.ValidationError({key: [f"No entity {values[key]} in this organization."]})


@dataclass(frozen=True)
class Kind:
    """What differs between the two kinds of graph rows; the writes below are the same for both."""

    name: str  # "entity" | "relationship": the audit action and the event names (``knowledge.<name>.<action>``)
    model: type[Entity] | type[Relationship]
    fields: tuple
    check: Callable  # (organization, values) -> None, raises a ValidationError
    event_data: Callable  # (row, actor) -> the seed 004 event's data


ENTITY = Kind(
    "entity", Entity, ENTITY_FIELDS, lambda org, values: _check_document(org, values.get("document_id")), _entity_data
)
RELATIONSHIP = Kind("relationship", Relationship, RELATIONSHIP_FIELDS, _entities_of, _relationship_data)


def _write(kind: Kind, organization, row, action: str, actor, before=None) -> None:
    audit_record(
        organization=organization,
        actor=actor,
        action=f"{kind.name}.{action}",
        instance=row,
        before=before,
        after=snapshot(row) if action != "delete" else None,
    )


def row_create(kind: Kind, *, organization, actor, data: dict):
    values = {k: data[k] for k in kind.fields if k in data}
    kind.check(organization, values)
    with transaction.atomic():
        row = kind.model.objects.create(organization=organization, created_by=_user(actor), **values)
        _write(kind, organization, row, "create", actor)
        _publish(organization.pk, kind.name, "created", kind.event_data(row, actor), actor)
    return row


def row_update(kind: Kind, *, row, actor, data: dict):
    values = {k: data[k] for k in kind.fields if k in data}
    kind.check(row.organization, values)
    with transaction.atomic():
        row = kind.model.objects.select_for_update().get(pk=row.pk)
        before = snapshot(row)
        for key, value in values.items():
            setattr(row, key, value)
        row.save()
        _write(kind, row.organization, row, "update", actor, before=before)
        _publish(row.organization_id, kind.name, "updated", kind.event_data(row, actor), actor)
    return row


def row_delete(kind: Kind, *, row, actor) -> None:
    """The row; an entity's relationships go with it (one ``relationship_deleted`` each, first)."""
    with transaction.atomic():
        _write(kind, row.organization, row, "delete", actor, before=snapshot(row))
        if kind is ENTITY:
            edges = Relationship.objects.for_org(row.organization).filter(Q(source=row) | Q(target=row))
            for rel in edges:
                _publish(row.organization_id, "relationship", "deleted", _relationship_data(rel, actor), actor)
        data = kind.event_data(row, actor)
        row.delete()
        _publish(row.organization_id, kind.name, "deleted", data, actor)


_NEIGHBOURHOOD_SQL = """
WITH RECURSIVE walk(entity_id, depth) AS (
    SELECT %(start)s::uuid, 0
  UNION
    SELECT CASE WHEN r.source_id = w.entity_id THEN r.target_id ELSE r.source_id END, w.depth + 1
    FROM walk w JOIN knowledge_relationship r
      ON r.organization_id = %(org)s AND (r.source_id = w.entity_id OR r.target_id = w.entity_id)
    WHERE w.depth < %(depth)s
)
SELECT entity_id, min(depth) AS depth FROM walk GROUP BY entity_id ORDER BY 2, 1 LIMIT %(limit)s
"""


def neighbourhood(*, organization, entity: Entity, depth: int) -> dict:
    """The entities within ``depth`` hops (either direction) and the relationships among them."""
    with connection.cursor() as cursor:
        cursor.execute(
            _NEIGHBOURHOOD_SQL,
            {"start": str(entity.pk), "org": str(organization.pk), "depth": depth, "limit": MAX_NEIGHBOURHOOD},
        )
        depths = {str(row[0]): row[1] for row in cursor.fetchall()}
    entities = list(Entity.objects.for_org(organization).filter(pk__in=list(depths)))
    relationships = list(
        Relationship.objects.for_org(organization).filter(source_id__in=list(depths), target_id__in=list(depths))
    )
    return {"entities": entities, "relationships": relationships, "depths": depths}
