"""Writes of the schemas app: a schema is checked against its JSON Schema meta-schema before it
is kept; a changed document is a new version (the old ones stay readable)."""

from __future__ import annotations

from django.db import IntegrityError, transaction

from apps.audit.services import audit_record, snapshot
from apps.schemas.documents import schema_problem
from apps.schemas.models import JsonSchema, JsonSchemaVersion
from kai_platform.api.errors.exceptions import Conflict, Unprocessable


def schema_check(document) -> None:
    """Refuse (422) anything that is not a valid JSON Schema object."""
    problem = schema_problem(document)
    if problem:
        raise Unprocessable(
            f"The schema is not a valid JSON Schema: {problem}.", errors=[{"field": "schema", "message": problem}]
        )


def _version(row: JsonSchema) -> None:
    JsonSchemaVersion.objects.create(
        organization_id=row.organization_id,
        created_by_id=row.created_by_id,
        json_schema=row,
        version=row.version,
        schema=row.schema,
    )


def json_schema_create(*, organization, actor, data: dict) -> JsonSchema:
    schema_check(data.get("schema"))
    try:
        with transaction.atomic():
            row = JsonSchema.objects.create(
                organization=organization,
                created_by=actor,
                name=data["name"],
                description=data.get("description") or "",
                schema=data["schema"],
            )
            _version(row)
            audit_record(
                organization=organization, actor=actor, action="json_schema.create", instance=row, after=snapshot(row)
            )
    except IntegrityError:
        raise Conflict(
            f"A schema named {data['name']!r} already exists.", errors=[{"field": "name", "message": "already exists"}]
        )
    return row


def json_schema_update(*, json_schema: JsonSchema, actor, data: dict) -> JsonSchema:
    """Changes name/description in place; a new ``schema`` document becomes the next version."""
    before = snapshot(json_schema)
    if "schema" in data:
        schema_check(data["schema"])
    try:
        with transaction.atomic():
            row = JsonSchema.objects.select_for_update().get(pk=json_schema.pk)
            for key in ("name", "description"):
                if key in data:
                    setattr(row, key, data[key])
            if "schema" in data and data["schema"] != row.schema:
                row.schema, row.version = data["schema"], row.version + 1
                _version(row)
            row.save()
            audit_record(
                organization=row.organization,
                actor=actor,
                action="json_schema.update",
                instance=row,
                before=before,
                after=snapshot(row),
            )
    except IntegrityError:
        raise Conflict(
            f"A schema named {data.get('name')!r} already exists.",
            errors=[{"field": "name", "message": "already exists"}],
        )
    return row


def json_schema_delete(*, json_schema: JsonSchema, actor) -> None:
    with transaction.atomic():
        audit_record(
            organization=json_schema.organization,
            actor=actor,
            action="json_schema.delete",
            instance=json_schema,
            before=snapshot(json_schema),
        )
        json_schema.delete()
