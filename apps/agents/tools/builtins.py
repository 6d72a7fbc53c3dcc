"""Built-in tools. All work offline except ``http_request``, which reaches only public
addresses unless the organization's network allow-list says otherwise."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.apps import apps

from apps.agents import selectors
from apps.agents.tools.base import BUILTIN_TOOLS, BuiltinTool, ToolContext, ToolError, register  # noqa: F401
from apps.agents.tools.custom import guarded_request

# --- calculator --------------------------------------------------------------------------------

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS = {
    name: getattr(math, name)
    for name in (
        "sqrt",
        "sin",
        "cos",
        "tan",
        "asin",
        "acos",
        "atan",
        "log",
        "log10",
        "log2",
        "exp",
        "floor",
        "ceil",
        "fabs",
        "factorial",
    )
}
_FUNCTIONS.update({"abs": abs, "round": round, "min": min, "max": max})
_CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}


def _evaluate(node):
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and (abs(right) > 1000 or abs(left) > 1e100):
            raise ToolError("exponent too large")
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        args = [_evaluate(a) for a in node.args]
        if node.func.id == "factorial" and (not args or args[0] > 500):
            raise ToolError("factorial argument too large")
        return _FUNCTIONS[node.func.id](*args)
    raise ToolError(f"unsupported expression element: {ast.dump(node)[:60]}")


def calculator(arguments: dict, context: ToolContext):
    expression = str(arguments.get("expression", ""))
    if len(expression) > 500:
        raise ToolError("expression longer than 500 characters")
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as exc:
        raise ToolError(f"not an arithmetic expression: {exc.msg}") from exc
    try:
        value = _evaluate(tree)
    except ZeroDivisionError:
        raise ToolError("division by zero")
    except (ValueError, OverflowError, TypeError) as exc:
        raise ToolError(f"cannot evaluate: {exc}") from exc
    return {"expression": expression, "result": value}


register(
    BuiltinTool(
        name="calculator",
        description="Evaluate an arithmetic expression (+ - * / // % **, math functions, pi, e).",
        parameters_schema={
            "type": "object",
            "required": ["expression"],
            "additionalProperties": False,
            "properties": {"expression": {"type": "string", "maxLength": 500}},
        },
        config_schema={"type": "object", "additionalProperties": False, "properties": {}},
        default_configuration={},
        run=calculator,
    )
)


# --- current time ------------------------------------------------------------------------------


def current_time(arguments: dict, context: ToolContext):
    zone_name = arguments.get("timezone") or context.configuration.get("default_timezone") or "UTC"
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolError(f"unknown time zone {zone_name!r}")
    now = datetime.now(zone)
    return {"timezone": zone_name, "iso": now.isoformat(), "unix": int(now.timestamp()), "weekday": now.strftime("%A")}


register(
    BuiltinTool(
        name="current_time",
        description="The current date and time in a time zone (IANA name, default UTC).",
        parameters_schema={
            "type": "object",
            "additionalProperties": False,
            "properties": {"timezone": {"type": "string", "maxLength": 64}},
        },
        config_schema={
            "type": "object",
            "additionalProperties": False,
            "properties": {"default_timezone": {"type": "string", "maxLength": 64}},
        },
        default_configuration={"default_timezone": "UTC"},
        run=current_time,
    )
)


# --- organization file reader ------------------------------------------------------------------


def file_reader(arguments: dict, context: ToolContext):
    if not apps.is_installed("apps.files"):
        raise ToolError("the files app is not installed yet, so there are no organization files to read")
    # deferred: optional — the files app may not be installed (checked above)
    from apps.files import selectors as file_selectors  # the files app's read interface

    max_bytes = int(context.configuration.get("max_bytes", 65536))
    stored = file_selectors.files_of(organization=context.organization).filter(pk=arguments["file_id"]).first()
    if stored is None:
        raise ToolError(f"no file {arguments['file_id']} in this organization")
    name, content_type = stored.name, stored.content_type
    try:
        handle = file_selectors.open_file(stored=stored)
    except OSError as exc:
        raise ToolError(f"cannot open file {stored.name}: {exc}") from exc
    with handle:
        data = handle.read(max_bytes + 1)
    truncated = len(data) > max_bytes
    text = data[:max_bytes].decode("utf-8", errors="replace")
    return {
        "file_id": arguments["file_id"],
        "name": name,
        "content_type": content_type,
        "content": text,
        "truncated": truncated,
    }


register(
    BuiltinTool(
        name="file_reader",
        description="Read an organization file (text) by its id.",
        parameters_schema={
            "type": "object",
            "required": ["file_id"],
            "additionalProperties": False,
            "properties": {"file_id": {"type": "string", "format": "uuid"}},
        },
        config_schema={
            "type": "object",
            "additionalProperties": False,
            "properties": {"max_bytes": {"type": "integer", "minimum": 1, "maximum": 1048576}},
        },
        default_configuration={"max_bytes": 65536},
        run=file_reader,
    )
)


# --- agent memory ------------------------------------------------------------------------------


def _need_agent(context: ToolContext):
    if context.agent is None:
        raise ToolError("memory tools need an agent")
    return context.agent


def memory_store(arguments: dict, context: ToolContext):
    # deferred: cycle — apps.agents.services → apps.agents.services.templates → this module, each at load
    from apps.agents import services

    agent = _need_agent(context)
    memory = services.memory_store(
        agent=agent,
        actor=context.actor,
        memory_type=arguments.get("memory_type") or "general",
        content=arguments["content"],
        tags=arguments.get("tags") or [],
        ttl=arguments.get("ttl"),
    )
    return {"id": str(memory.pk), "stored": True}


def memory_query(arguments: dict, context: ToolContext):
    agent = _need_agent(context)
    rows = selectors.memory_query(
        agent=agent,
        memory_type=arguments.get("memory_type"),
        tags=arguments.get("tags"),
        limit=int(arguments.get("limit") or 10),
    )
    return {
        "memories": [
            {
                "id": str(m.pk),
                "memory_type": m.memory_type,
                "content": m.content,
                "tags": m.tags,
                "created_at": m.created_at.isoformat(),
            }
            for m in rows
        ]
    }


_TAGS = {"type": "array", "items": {"type": "string", "maxLength": 64}, "maxItems": 20}
register(
    BuiltinTool(
        name="memory_store",
        description="Remember something (typed, tagged, optional TTL in seconds) in the agent's memory.",
        parameters_schema={
            "type": "object",
            "required": ["content"],
            "additionalProperties": False,
            "properties": {
                "content": {},
                "memory_type": {"type": "string", "maxLength": 50},
                "tags": _TAGS,
                "ttl": {"type": "integer", "minimum": 1},
            },
        },
        config_schema={"type": "object", "additionalProperties": False, "properties": {}},
        default_configuration={},
        run=memory_store,
    )
)
register(
    BuiltinTool(
        name="memory_query",
        description="Recall the agent's memories by type and tags, newest first.",
        parameters_schema={
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "memory_type": {"type": "string", "maxLength": 50},
                "tags": _TAGS,
                "limit": {"type": "integer", "minimum": 1, "maximum": 100},
            },
        },
        config_schema={"type": "object", "additionalProperties": False, "properties": {}},
        default_configuration={},
        run=memory_query,
    )
)


# --- http request ------------------------------------------------------------------------------


def http_request(arguments: dict, context: ToolContext):
    config = context.configuration
    method = (arguments.get("method") or "GET").upper()
    allowed = [m.upper() for m in config.get("allowed_methods") or ["GET", "HEAD"]]
    if method not in allowed:
        raise ToolError(f"method {method} is not allowed for this tool (allowed: {', '.join(allowed)})")
    return guarded_request(
        organization=context.organization,
        method=method,
        url=arguments["url"],
        headers=arguments.get("headers") or {},
        params=arguments.get("params"),
        json_body=arguments.get("json"),
        timeout=float(config.get("timeout_seconds") or 10),
        max_bytes=int(config.get("max_response_bytes") or 65536),
    )


register(
    BuiltinTool(
        name="http_request",
        description="Fetch a public http(s) URL. Private, loopback and link-local addresses are refused "
        "(after DNS resolution and on redirects) unless the organization allow-lists them.",
        parameters_schema={
            "type": "object",
            "required": ["url"],
            "additionalProperties": False,
            "properties": {
                "url": {"type": "string", "maxLength": 2000},
                "method": {"type": "string", "enum": ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]},
                "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                "params": {"type": "object"},
                "json": {},
            },
        },
        config_schema={
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "allowed_methods": {
                    "type": "array",
                    "items": {"type": "string", "enum": ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]},
                },
                "timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 60},
                "max_response_bytes": {"type": "integer", "minimum": 1, "maximum": 10485760},
            },
        },
        default_configuration={"allowed_methods": ["GET", "HEAD"], "timeout_seconds": 10, "max_response_bytes": 65536},
        run=http_request,
    )
)
