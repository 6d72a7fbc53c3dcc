from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jsonschema


class ToolError(Exception):
    pass


@dataclass
class ToolContext:
    organization: Any
    agent: Any = None
    actor: Any = None
    configuration: dict = field(default_factory=dict)
    #: sources a tool drew on (``{"chunk_id", …}``); a run keeps them in its result
    citations: list = field(default_factory=list)


@dataclass(frozen=True)
class BuiltinTool:
    name: str
    description: str
    parameters_schema: dict
    config_schema: dict
    default_configuration: dict
    run: Callable[[dict, ToolContext], Any]


BUILTIN_TOOLS: dict[str, BuiltinTool] = {}


def register(tool: BuiltinTool) -> BuiltinTool:
    BUILTIN_TOOLS[tool.name] = tool
    return tool


def builtin_spec(name: str) -> BuiltinTool | None:
    # deferred: cycle — builtins imports this module at load (and registers its tools here)
    from apps.agents.tools import builtins  # noqa: F401  (registers)

    return BUILTIN_TOOLS.get(name)


def schema_errors(schema: dict, value) -> list[str]:
    """Human messages for every JSON-schema violation, each with its JSON path."""
    if not schema:
        return []
    validator = jsonschema.Draft202012Validator(schema)
    out = []
    for error in sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path)):
        path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        out.append(f"{path}: {error.message}")
    return out


def run_tool(tool, arguments: dict, context: ToolContext):
    """Run an enabled Tool row (built-in or organization-defined)."""
    # deferred: cycle — apps.agents.tools.custom imports this module at load
    from apps.agents.tools import custom

    if not tool.enabled:
        raise ToolError(f"tool {tool.name!r} is disabled")
    errors = schema_errors(tool.parameters_schema, arguments)
    if errors:
        raise ToolError(f"invalid arguments for {tool.name!r}: " + "; ".join(errors))
    context.configuration = tool.configuration or {}
    spec = builtin_spec(tool.name) if tool.tool_type == "builtin" else None
    if spec is not None:
        return spec.run(arguments, context)
    return custom.run_custom(tool, arguments, context)
