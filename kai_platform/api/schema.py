"""drf-spectacular hooks and security schemes."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import force_instance, is_serializer
from drf_spectacular.utils import Direction
from rest_framework.fields import CharField

from kai_platform.api.url_pattern import URL_PATTERN, URL_RULE

if TYPE_CHECKING:
    from drf_spectacular.generators import SchemaGenerator
    from rest_framework.request import Request


class KaiAutoSchema(AutoSchema):
    """A viewset's PUT takes partial bodies (docs/decisions.md, ``put_is_partial``): its request body is
    the partial ("Patched…") schema, as for PATCH, so the document promises no required field the view
    does not require."""

    def _get_request_for_media_type(self, serializer: Any, direction: str = "request") -> tuple[Any, bool]:
        if (
            self.method == "PUT"
            and getattr(self.view, "put_is_partial", False)
            and getattr(self.view, "action", None) == "update"
            and is_serializer(serializer)
        ):
            serializer = copy.copy(force_instance(serializer))
            serializer.partial = True
        if isinstance(serializer, dict) and serializer.get(BODY_REQUIRED):  # a schema given as is, body required
            return {k: v for k, v in serializer.items() if k != BODY_REQUIRED}, True
        schema, required = super()._get_request_for_media_type(serializer, direction)  # type: ignore[no-untyped-call]  # drf-spectacular's own method, untyped
        # a body that needs one of several fields (``requires_one_of``) cannot be left out either
        return schema, required or bool(getattr(serializer, "schema_requires_one_of", ()))


#: in a request schema given as a dict (``extend_schema(request={media type: {...}})``): the body is required
BODY_REQUIRED = "x-kai-body-required"


def only_canonical_api(endpoints: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The API is served under /api/v1/ and /api/; the document lists /api/v1/ once."""
    return [ep for ep in endpoints if ep[0].startswith("/api/v1/")]


class JWTAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "kai_platform.tenancy.authentication.JWTAuthentication"
    name = "jwtAuth"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "Access token from auth/login. Pick the organization with X-Organization.",
        }


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "kai_platform.tenancy.authentication.ApiKeyAuthentication"
    name = "apiKeyAuth"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "kai_ API key",
            "description": "Platform API key (kai_…) from auth/tokens, bound to one organization and role.",
        }


#: statuses any operation may answer with the error envelope (docs/api.md)
ERROR_STATUSES = {
    "400": "Invalid input (unknown fields are refused).",
    "401": "Missing, invalid, expired or revoked credentials.",
    "403": "The role or organization does not allow this.",
    "404": "Not found (or another organization's object).",
    "409": "Conflict with the current state.",
    "413": "The body or upload exceeds its size limit.",
    "415": "Unsupported media type.",
    "422": "Well-formed but not processable.",
    "429": "Rate limit exceeded (GENERAL_002, Retry-After).",
    "503": "A dependency (database, Redis, broker) is unavailable (GENERAL_004).",
}

ERROR_ENVELOPE = {
    "type": "object",
    "description": "The one error shape of every API error.",
    "properties": {
        "detail": {"type": "string"},
        "type": {"type": "string"},
        "code": {"type": "string", "example": "GENERAL_001"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": ["string", "null"]}, "message": {"type": "string"}},
                "required": ["field", "message"],
            },
        },
        "request_id": {"type": "string"},
    },
    "required": ["detail", "type", "code", "errors", "request_id"],
}


#: U+0000 cannot be stored (PostgreSQL text and jsonb) and is refused in bodies and query strings
NO_NUL = "^[^\\u0000]*$"
#: ... nor in an object's keys: OpenAPI 3.1 (JSON Schema 2020-12) states it with ``propertyNames``
NO_NUL_KEYS = {"pattern": NO_NUL}
#: any JSON value without U+0000 in any string or key, at any depth (what a free-form value may hold); its
#: keywords bind only their own type (``pattern`` a string, ``items`` an array, …), so it admits every type
JSON_VALUE = "JSONValue"
JSON_VALUE_REF = {"$ref": f"#/components/schemas/{JSON_VALUE}"}
JSON_VALUE_SCHEMA = {
    "description": "Any JSON value; no string or key in it, at any depth, holds U+0000 (a 400).",
    "pattern": NO_NUL,
    "propertyNames": NO_NUL_KEYS,
    "items": JSON_VALUE_REF,
    "additionalProperties": JSON_VALUE_REF,
}
#: the keywords a schema of any JSON value carries (anything else narrows it)
_ANNOTATIONS = {"description", "title", "readOnly", "writeOnly", "example", "examples", "default", "deprecated"}


def _types(schema: dict[str, Any]) -> set[Any]:
    """A schema's types: OpenAPI 3.1 spells a nullable one as a list (``["string", "null"]``)."""
    kind = schema.get("type")
    return set(kind) if isinstance(kind, list) else {kind}


def _free(schema: object) -> bool:
    """A schema of any JSON value: annotations only, or the reference to ``JSONValue``."""
    return isinstance(schema, dict) and (schema.keys() <= _ANNOTATIONS or schema == JSON_VALUE_REF)


def _no_nul(schema: object) -> None:
    """Every free string states that U+0000 is refused (strings with a format, enum or pattern of their
    own are narrower already), and so does every object that takes keys it does not name."""
    if isinstance(schema, list):
        for item in schema:
            _no_nul(item)
        return
    if not isinstance(schema, dict):
        return
    branches = schema.get("oneOf")
    if isinstance(branches, list) and len(branches) == 2 and {"type": "null"} in branches and any(map(_free, branches)):
        # a nullable free value (``oneOf: [{}, null]``): JSONValue admits null already, and null matching both
        # branches of a oneOf would be refused
        del schema["oneOf"]
        schema["$ref"] = JSON_VALUE_REF["$ref"]
    types = _types(schema)
    if "string" in types and schema.get("format") == "uri":
        # what Django's URLValidator takes, in place of ``format: uri``: that admits any URI (``a:``), and Django
        # takes what no URI (nor IRI) format admits (``http://ä^@a.com``): no format states the rule, the pattern
        # does (a field's own, as HttpURLField's, or URLField's)
        del schema["format"]
        if "pattern" not in schema:
            schema["pattern"] = URL_PATTERN
            if URL_RULE not in schema.get("description", ""):
                schema["description"] = " ".join(filter(None, (schema.get("description"), URL_RULE)))
    if "string" in types and not {"format", "enum", "pattern", "contentMediaType", "contentEncoding"} & schema.keys():
        schema["pattern"] = NO_NUL  # (a file's content, 3.1's contentMediaType, is bytes: U+0000 is fine there)
    if "object" in types and schema.get("additionalProperties") is not False:
        schema.setdefault("propertyNames", dict(NO_NUL_KEYS))
        if schema.get("additionalProperties") in (None, True, {}) and not schema.get("properties"):
            schema["additionalProperties"] = dict(JSON_VALUE_REF)  # a free-form object: its values too
    if "array" in types and schema.get("items") in (None, True, {}):
        schema["items"] = dict(JSON_VALUE_REF)
    if None in types and _free(schema) and "$ref" not in schema:  # any JSON value (a JSONField): no U+0000
        schema["$ref"] = JSON_VALUE_REF["$ref"]
    for key, value in list(schema.items()):
        if key in {"properties", "patternProperties"} and isinstance(value, dict):
            for item in value.values():
                _no_nul(item)
        elif key not in {"example", "examples", "default", "enum", "const", "propertyNames"}:
            _no_nul(value)


def request_rules(
    result: dict[str, Any], generator: SchemaGenerator, request: Request | None, public: bool
) -> dict[str, Any]:
    """Rules every operation shares: a PUT carries a body (``{}`` changes nothing; no body at all is a
    400), so does a body with required fields or variants, and strings never hold U+0000."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    for schema in schemas.values():
        if RULES_KEY in schema:
            schema["allOf"] = [*schema.get("allOf", []), *schema.pop(RULES_KEY)]
        _no_nul(schema)
    schemas[JSON_VALUE] = copy.deepcopy(JSON_VALUE_SCHEMA)
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            if not isinstance(operation, dict):
                continue
            for parameter in operation.get("parameters", []):
                if parameter.get("in") in {"query", "path"}:
                    _no_nul(parameter.get("schema"))
            for content in (operation.get("requestBody") or {}).get("content", {}).values():
                _no_nul(content.get("schema"))  # a body schema given inline (``extend_schema(request={...})``)
            body = operation.get("requestBody")
            if body and (
                method == "put" or any(_needs_body(result, c.get("schema")) for c in body["content"].values())
            ):
                body["required"] = True
    return result


def _needs_body(result: dict[str, Any], schema: object) -> bool:
    """A body schema that absence cannot satisfy (required fields, one of several variants): the view
    answers 400 to no body at all, so the document says the body is required."""
    components = result.get("components", {}).get("schemas", {})
    while isinstance(schema, dict) and "$ref" in schema:
        schema = components.get(schema["$ref"].rsplit("/", 1)[-1])
    return isinstance(schema, dict) and bool(schema.get("required") or "oneOf" in schema or "anyOf" in schema)


def error_responses(
    result: dict[str, Any], generator: SchemaGenerator, request: Request | None, public: bool
) -> dict[str, Any]:
    """Every operation documents the error envelope for the statuses the kernel answers with, so
    clients (and schema-driven fuzzers) see errors as part of the contract."""
    result.setdefault("components", {}).setdefault("schemas", {})["ErrorEnvelope"] = ERROR_ENVELOPE
    content = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}}
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            responses = operation.setdefault("responses", {})
            for status, description in ERROR_STATUSES.items():
                responses.setdefault(status, {"description": description, "content": content})
    return result


class StrictSerializerSchema(OpenApiSerializerExtension):
    """Request bodies of the strict serializers (``StrictFieldsMixin``: unknown fields are a 400)
    say so (``additionalProperties: false``), and a body that needs one of several fields
    (``schema_requires_one_of``, set by ``requires_one_of``) says which."""

    target_class = "kai_platform.api.serializers.StrictFieldsMixin"
    match_subclasses = True

    def map_serializer(self, auto_schema: AutoSchema, direction: Direction) -> dict[str, Any]:
        schema: dict[str, Any] = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        if direction == "request":
            schema["additionalProperties"] = False
            not_blank(self.target, schema)
            one_of = getattr(self.target, "schema_requires_one_of", ())
            if one_of:
                # given, and not blank: the views strip text and read an empty value as absent
                schema["anyOf"] = [_given(schema, name) for name in one_of]
            # a partial body is checked merged with the stored object: only the rules it can hold alone
            partial = getattr(self.target, "partial", False)
            rules = getattr(self.target, "schema_partial_rules" if partial else "schema_rules", ())
            if rules:
                schema[RULES_KEY] = list(rules)  # under allOf by request_rules, after the enum hook (which
                # would turn a rule's one-value enum into the field's enum component)
        return schema


#: a string with something besides whitespace in it, whitespace as Python's ``str.strip`` reads it (what DRF
#: trims; ``\x1c``…``\x1f`` included), and without U+0000
NOT_BLANK = (
    "^[^\\u0000]*[^\\u0000\\t\\n\\u000b\\f\\r \\u001c-\\u001f\\u0085\\u00a0\\u1680\\u2000-\\u200a"
    "\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000]*$"
)


def not_blank(serializer: object, schema: dict[str, Any]) -> None:
    """A text field DRF trims and that may not be blank refuses whitespace only: its pattern says so
    (``minLength`` counts the characters before the trim)."""
    fields = getattr(serializer, "fields", {})
    for name, prop in schema.get("properties", {}).items():
        field = fields.get(name)
        if (
            isinstance(field, CharField)
            and field.trim_whitespace
            and not field.allow_blank
            and "string" in _types(prop)
            and not {"format", "enum", "pattern"} & prop.keys()
        ):
            prop["pattern"] = NOT_BLANK


def _given(schema: dict[str, Any], name: str) -> dict[str, Any]:
    # a pattern binds strings only: a field of another type (or one whose type sits under oneOf) is just required
    return {"required": [name], "properties": {name: GIVEN}}


RULES_KEY = "x-kai-rules"
_SerializerClass = TypeVar("_SerializerClass", bound="type[Any]")
#: a string with something in it (the views strip text: blank is absent)
GIVEN = {"pattern": "\\S"}


def schema_rules(
    *rules: dict[str, Any], partial: tuple[dict[str, Any], ...] = ()
) -> Callable[[_SerializerClass], _SerializerClass]:
    """Class decorator for a strict serializer whose ``validate`` (or service) checks rules across fields
    (``protocol: oidc`` needs ``client_id``, say): each rule is a JSON Schema the create body must match,
    stated in the document under ``allOf`` so a generated client or fuzzer knows it. ``partial``: the
    rules a PUT/PATCH body must match on its own (what it names, whatever is stored)."""

    def decorate(serializer_class: _SerializerClass) -> _SerializerClass:
        serializer_class.schema_rules = rules
        serializer_class.schema_partial_rules = partial
        return serializer_class

    return decorate


def requires_one_of(*fields: str) -> Callable[[_SerializerClass], _SerializerClass]:
    """Class decorator for a strict serializer whose body needs at least one of ``fields``
    (checked in its ``validate``): the OpenAPI schema says so too, so a client generated from it
    never builds a body the view refuses."""

    def decorate(serializer_class: _SerializerClass) -> _SerializerClass:
        serializer_class.schema_requires_one_of = fields
        return serializer_class

    return decorate
