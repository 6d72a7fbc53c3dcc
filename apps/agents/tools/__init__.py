"""Tools agents can call: the built-in registry (offline) and organization-defined HTTP tools.

``run_tool(tool, arguments, context)`` validates the arguments against the tool's parameter
schema and runs it; a failure raises ``ToolError`` with a message fit for the model and the user.
"""

from __future__ import annotations

from apps.agents.tools.base import BUILTIN_TOOLS, ToolContext, ToolError, builtin_spec, run_tool  # noqa: F401
