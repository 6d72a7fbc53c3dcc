"""JSON Schema documents: which validator checks one, and what is wrong with one."""

from __future__ import annotations

import jsonschema


def validator_class(document: dict):
    """The validator of the document's ``$schema`` (the latest draft without one); None for an
    unknown ``$schema``."""
    if "$schema" not in document:
        return jsonschema.Draft202012Validator
    if not isinstance(document["$schema"], str):
        return None
    return jsonschema.validators.validator_for(document, default=None)


def schema_problem(document) -> str | None:
    """Why ``document`` is not a usable JSON Schema, or None."""
    if not isinstance(document, dict):
        return "the schema must be a JSON object"
    validator = validator_class(document)
    if validator is None:
        return f"unknown $schema {document['$schema']!r}"
    try:
        validator.check_schema(document)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "(root)"
        return f"{exc.message} at {where}"
    return None
