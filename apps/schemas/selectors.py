"""Reads of the schemas app."""

from __future__ import annotations

import re

from apps.schemas.models import JsonSchema, JsonSchemaVersion

_REF_RE = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]+)(?:@(?P<version>\d+))?$")


def schemas_for_list(*, queryset):
    return queryset.order_by("name")


def versions_of(*, json_schema: JsonSchema):
    return JsonSchemaVersion.objects.for_org(json_schema.organization_id).filter(json_schema=json_schema)


def schema_document(*, organization, reference: str) -> tuple[dict, str] | None:
    """``name`` (current version) or ``name@<version>`` → (JSON Schema, "name@version"), or None."""
    match = _REF_RE.match((reference or "").strip())
    if not match:
        return None
    row = JsonSchema.objects.for_org(organization).filter(name=match["name"]).first()
    if row is None:
        return None
    if match["version"] is None or int(match["version"]) == row.version:
        return row.schema, f"{row.name}@{row.version}"
    old = versions_of(json_schema=row).filter(version=int(match["version"])).first()
    return (old.schema, f"{row.name}@{old.version}") if old else None
