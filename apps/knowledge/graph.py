"""The organization's knowledge graph: writes of entities and relationships (each audited and
published as the hub's ``entity_*`` / ``relationship_*`` events, docs/knowledge.md) and the neighbourhood read."""
from __future__ import annotations

from django.db import connection, transaction
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
    return {"entity_id": str(entity.pk), "type": entity.type, "label": entity.label,
            "created_by": str(entity.created_by_id) if entity.created_by_id else None,
            "updated_by": str(actor.pk) if _user(actor) else None, "properties": entity.properties or {}}


def _relationship_data(rel: Relationship, actor) -> dict:
    properties = rel.properties or {}
    return {"relationship_id": str(rel.pk), "source_id": str(rel.source_id), "target_id": str(rel.target_id),
            "relationship_type": rel.type, "strength": properties.get("strength"),
            "created_by": str(rel.created_by_id) if rel.created_by_id else None,
            "updated_by": str(actor.pk) if _user(actor) else None, "properties": properties}


def _publish(organization_id, kind: str, action: str, data: dict, actor) -> None:
    publish(organization_id, f"knowledge.{kind}.{action}", data, actor=_user(actor), component="knowledge")


def _check_document(organization, document_id) -> None:
    if document_id and not Document.objects.for_org(organization).filter(pk=document_id).exists():
        raise exceptions.ValidationError({"document_id": [f"No document {document_id} in this organization."]})


def entity_create(*, organization, actor, data: dict) -> Entity:
    values = {k: data[k] for k in ENTITY_FIELDS if k in data}
    _check_document(organization, values.get("document_id"))
    with transaction.atomic():
        entity = Entity.objects.create(organization=organization, created_by=_user(actor), **values)
        audit_record(organization=organization, actor=actor, action="entity.create", instance=entity,
                     after=snapshot(entity))
        _publish(organization.pk, "entity", "created", _entity_data(entity, actor), actor)
    return entity


def entity_update(*, entity: Entity, actor, data: dict) -> Entity:
    values = {k: data[k] for k in ENTITY_FIELDS if k in data}
    _check_document(entity.organization, values.get("document_id"))
    with transaction.atomic():
        entity = Entity.objects.select_for_update().get(pk=entity.pk)
        before = snapshot(entity)
        for key, value in values.items():
            setattr(entity, key, value)
        entity.save()
        audit_record(organization=entity.organization, actor=actor, action="entity.update", instance=entity,
                     before=before, after=snapshot(entity))
        _publish(entity.organization_id, "entity", "updated", _entity_data(entity, actor), actor)
    return entity


def entity_delete(*, entity: Entity, actor) -> None:
    """The entity and its relationships; one ``relationship_deleted`` per edge, then ``entity_deleted``."""
    with transaction.atomic():
        audit_record(organization=entity.organization, actor=actor, action="entity.delete", instance=entity,
                     before=snapshot(entity))
        edges = list(Relationship.objects.for_org(entity.organization)
                     .filter(source=entity) | Relationship.objects.for_org(entity.organization).filter(target=entity))
        for rel in edges:
            _publish(entity.organization_id, "relationship", "deleted", _relationship_data(rel, actor), actor)
        data = _entity_data(entity, actor)
        entity.delete()
        _publish(entity.organization_id, "entity", "deleted", data, actor)


def _entities_of(organization, values: dict) -> None:
    ids = {str(values[k]) for k in ("source_id", "target_id") if k in values}
    found = {str(pk) for pk in Entity.objects.for_org(organization).filter(pk__in=ids).values_list("pk", flat=True)}
    for key in ("source_id", "target_id"):
        if key in values and str(values[key]) not in found:
            raise exceptions.ValidationError({key: [f"No entity {values[key]} in this organization."]})


def relationship_create(*, organization, actor, data: dict) -> Relationship:
    values = {k: data[k] for k in RELATIONSHIP_FIELDS if k in data}
    _entities_of(organization, values)
    with transaction.atomic():
        rel = Relationship.objects.create(organization=organization, created_by=_user(actor), **values)
        audit_record(organization=organization, actor=actor, action="relationship.create", instance=rel,
                     after=snapshot(rel))
        _publish(organization.pk, "relationship", "created", _relationship_data(rel, actor), actor)
    return rel


def relationship_update(*, relationship: Relationship, actor, data: dict) -> Relationship:
    values = {k: data[k] for k in RELATIONSHIP_FIELDS if k in data}
    _entities_of(relationship.organization, values)
    with transaction.atomic():
        rel = Relationship.objects.select_for_update().get(pk=relationship.pk)
        before = snapshot(rel)
        for key, value in values.items():
            setattr(rel, key, value)
        rel.save()
        audit_record(organization=rel.organization, actor=actor, action="relationship.update", instance=rel,
                     before=before, after=snapshot(rel))
        _publish(rel.organization_id, "relationship", "updated", _relationship_data(rel, actor), actor)
    return rel


def relationship_delete(*, relationship: Relationship, actor) -> None:
    with transaction.atomic():
        audit_record(organization=relationship.organization, actor=actor, action="relationship.delete",
                     instance=relationship, before=snapshot(relationship))
        data = _relationship_data(relationship, actor)
        relationship.delete()
        _publish(relationship.organization_id, "relationship", "deleted", data, actor)


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
        cursor.execute(_NEIGHBOURHOOD_SQL, {"start": str(entity.pk), "org": str(organization.pk), "depth": depth,
                                            "limit": MAX_NEIGHBOURHOOD})
        depths = {str(row[0]): row[1] for row in cursor.fetchall()}
    entities = list(Entity.objects.for_org(organization).filter(pk__in=list(depths)))
    relationships = list(Relationship.objects.for_org(organization)
                         .filter(source_id__in=list(depths), target_id__in=list(depths)))
    return {"entities": entities, "relationships": relationships, "depths": depths}
