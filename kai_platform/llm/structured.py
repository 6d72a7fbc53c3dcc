"""Structured answers: ``params["response_format"] = {"name": str, "schema": <JSON Schema>}`` asks a
client for one JSON document matching the schema. OpenAI-compatible clients send
``response_format: {type: json_schema}`` (``json_object`` where the provider has no schema mode),
Anthropic forces a call of a tool whose input is the schema, and the builtin provider answers a
deterministic instance of the schema (``instance_of``)."""

from __future__ import annotations

import json
import re
from typing import Any

#: the tool an Anthropic model is made to call to answer in the schema
ANSWER_TOOL = "structured_answer"
#: providers whose chat API has a JSON mode but no JSON Schema mode
JSON_OBJECT_ONLY = frozenset({"deepseek"})


def response_format(params: dict[str, Any] | None) -> dict[str, Any] | None:
    """The ``{name, schema}`` asked for, or None."""
    value = (params or {}).get("response_format")
    if isinstance(value, dict) and isinstance(value.get("schema"), dict):
        name = re.sub(r"[^A-Za-z0-9_-]", "_", str(value.get("name") or "answer"))[:64] or "answer"
        return {"name": name, "schema": value["schema"]}
    return None


def openai_response_format(fmt: dict[str, Any], provider_type: str) -> dict[str, Any]:
    if provider_type in JSON_OBJECT_ONLY:
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": {"name": fmt["name"], "schema": fmt["schema"]}}


def anthropic_answer_tool(fmt: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": ANSWER_TOOL,
        "description": f"Give the final answer ({fmt['name']}) as this tool's input.",
        "input_schema": fmt["schema"]
        if fmt["schema"].get("type") == "object"
        else {"type": "object", "properties": {"value": fmt["schema"]}, "required": ["value"]},
    }


def anthropic_answer(fmt: dict[str, Any], arguments: dict[str, Any]) -> str:
    """The JSON text of a forced answer-tool call (unwrapped when the schema was not an object)."""
    value = arguments if fmt["schema"].get("type") == "object" else arguments.get("value")
    return json.dumps(value, ensure_ascii=False)


# --- a deterministic instance of a schema (the builtin provider's answer) -----------------------


def _resolve_ref(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return schema
    node = root
    for part in ref[2:].split("/"):
        node = node.get(part.replace("~1", "/").replace("~0", "~"), {}) if isinstance(node, dict) else {}
    return node if isinstance(node, dict) else {}


def _string(schema: dict[str, Any], hint: str) -> str:
    formats = {
        "date": "2024-01-01",
        "date-time": "2024-01-01T00:00:00Z",
        "email": "builtin@example.com",
        "uri": "https://example.com/",
        "uuid": "00000000-0000-4000-8000-000000000000",
        "time": "00:00:00",
    }
    text = formats.get(str(schema.get("format") or ""), f"builtin {hint}".strip())
    minimum, maximum = int(schema.get("minLength") or 0), schema.get("maxLength")
    if len(text) < minimum:
        text = text + "x" * (minimum - len(text))
    return text[: int(maximum)] if maximum is not None else text


def _number(schema: dict[str, Any], integer: bool) -> Any:
    value = schema.get("minimum", schema.get("exclusiveMinimum", 0))
    if "exclusiveMinimum" in schema and "minimum" not in schema:
        value = value + 1
    maximum = schema.get("maximum")
    if maximum is not None and value > maximum:
        value = maximum
    return int(value) if integer else value


def instance_of(schema: Any, root: dict[str, Any] | None = None, hint: str = "", depth: int = 0) -> Any:
    """A value valid for the common keywords (type, properties/required, items/minItems, enum,
    const, anyOf/oneOf/allOf, $ref, string formats and lengths, number bounds); ``pattern`` and
    exotic keywords are not solved."""
    root = root if root is not None else schema
    if not isinstance(schema, dict) or depth > 12:
        return None
    schema = _resolve_ref(schema, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return instance_of(schema[key][0], root, hint, depth + 1)
    if schema.get("allOf"):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            part = _resolve_ref(part, root)
            merged.update({k: v for k, v in part.items() if k not in ("properties", "required")})
            merged.setdefault("properties", {}).update(part.get("properties") or {})
            merged.setdefault("required", []).extend(part.get("required") or [])
        return instance_of(merged, root, hint, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        return {name: instance_of(sub, root, name, depth + 1) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        count = max(1, int(schema.get("minItems") or 0))
        if schema.get("maxItems") is not None:
            count = min(count, int(schema["maxItems"]))
        return [instance_of(schema.get("items") or {}, root, hint, depth + 1) for _ in range(count)]
    if kind == "integer":
        return _number(schema, True)
    if kind == "number":
        return _number(schema, False)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(schema, hint)
