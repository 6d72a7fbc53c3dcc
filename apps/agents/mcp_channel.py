"""The MCP channel of deployments (``channels: ["mcp"]``, docs/agents.md).

A deployment with the ``mcp`` channel is also a Model Context Protocol server at
``/mcp/deployments/{id}/`` (streamable HTTP transport, the ``mcp`` package), exposing the deployed
agent (run synchronously) or orchestration (run on a worker, awaited) as one tool. Clients
authenticate with the deployment key (``Authorization: Bearer kdep_…`` or ``X-Deployment-Key``);
the key is checked on every HTTP request, before the MCP layer sees it.

The session manager runs stateless (every POST stands alone, nothing is kept between requests),
so any ASGI replica can answer any request. Daphne sends no ASGI lifespan events, so the
manager's task group is started on the first request and lives as long as the process's loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

import mcp_types as types
from channels.db import database_sync_to_async
from django.conf import settings
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from rest_framework.exceptions import APIException

from apps.agents import orchestrations, services
from apps.agents.models import Deployment, DeploymentStatus

logger = logging.getLogger(__name__)

PATH_PREFIX = "/mcp/deployments/"
_PATH_RE = re.compile(r"^/mcp/deployments/(?P<id>[0-9a-fA-F-]{32,36})/?$")
SCOPE_KEY = "kai_deployment"

INPUT_SCHEMA = {
    "type": "object",
    "properties": {
        "prompt": {"type": "string", "description": "What to ask the deployed agent or orchestration."},
        "parameters": {
            "type": "object",
            "description": "Model parameters (temperature, max_tokens, …).",
            "additionalProperties": True,
        },
    },
    "required": ["prompt"],
    "additionalProperties": False,
}


def tool_name(name: str) -> str:
    """A deployment name as an MCP tool name (``[A-Za-z0-9_-]{1,64}``)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name or "").strip("_")[:64] or "run"


def _deployment_of(ctx) -> dict:
    request = getattr(ctx, "request", None)
    scope = getattr(request, "scope", None) or {}
    info = scope.get(SCOPE_KEY)
    if info is None:  # only reachable through DeploymentMCPApp, which always sets it
        raise RuntimeError("MCP request without an authenticated deployment")
    return info


def _tool_for(info: dict) -> types.Tool:
    description = info["description"] or f"Ask the deployed {info['kind']} '{info['target_name']}'."
    return types.Tool(
        name=tool_name(info["name"]), title=info["name"], description=description, input_schema=INPUT_SCHEMA
    )


async def _list_tools(ctx, params) -> types.ListToolsResult:
    return types.ListToolsResult(tools=[_tool_for(_deployment_of(ctx))])


def _invoke(deployment_id: str, prompt: str, parameters: dict | None) -> dict:
    deployment = (
        Deployment.objects.select_related("organization", "agent__organization", "created_by")
        .filter(pk=deployment_id, status=DeploymentStatus.RUNNING)
        .first()
    )
    if deployment is None:
        raise LookupError("The deployment was stopped.")
    _status, body = services.deployment_invoke(deployment=deployment, prompt=prompt, params=parameters, channel="mcp")
    return body


def _error(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=message)], is_error=True)


async def _call_tool(ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
    info = _deployment_of(ctx)
    expected = tool_name(info["name"])
    if params.name != expected:
        return _error(f"Unknown tool {params.name!r}; this deployment serves {expected!r}.")
    arguments = params.arguments or {}
    prompt = arguments.get("prompt")
    parameters = arguments.get("parameters")
    if not isinstance(prompt, str) or not prompt.strip():
        return _error("'prompt' must be a non-empty string.")
    if parameters is not None and not isinstance(parameters, dict):
        return _error("'parameters' must be an object.")
    try:
        result = await database_sync_to_async(_invoke)(info["id"], prompt, parameters)
    except APIException as exc:
        return _error(str(exc.detail))
    except LookupError as exc:
        return _error(str(exc))
    structured = json.loads(json.dumps(result, default=str))
    if result.get("status") not in (None, "COMPLETED"):  # a deployed orchestration's run that failed or goes on
        text = result.get("error") or f"The run is {result['status']} (execution {result.get('execution_id')})."
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=text)], structured_content=structured, is_error=True
        )
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=str(result.get("output") or ""))], structured_content=structured
    )


def build_server() -> Server:
    return Server(
        "kai-deployments",
        version="1",
        on_list_tools=_list_tools,
        on_call_tool=_call_tool,
        instructions="A kAI deployment: call its tool with a prompt to run the deployed agent.",
    )


def _security_settings() -> TransportSecuritySettings:
    hosts = list(settings.ALLOWED_HOSTS)
    if not hosts or "*" in hosts:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    allowed_hosts = []
    for host in hosts:
        host = host.lstrip(".")
        allowed_hosts += [host, f"{host}:*"]
    origins = [settings.KAI_PUBLIC_URL, *getattr(settings, "CORS_ALLOWED_ORIGINS", [])]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=allowed_hosts,
        allowed_origins=[o.rstrip("/") for o in origins if o],
    )


def _authenticate(deployment_id: str, raw_key: str) -> dict | None:
    deployment = services.deployment_authenticate(deployment_id=deployment_id, raw_key=raw_key)
    if deployment is None:
        return None
    if deployment.agent is not None:
        kind, target_name = "agent", deployment.agent.name
        description = deployment.agent.description or deployment.agent.goal or ""
    else:
        orchestration = orchestrations.orchestration_get(
            organization=deployment.organization_id, orchestration_id=deployment.orchestration_id
        )
        if orchestration is None:
            return None
        kind, target_name = "orchestration", orchestration.name
        description = orchestration.description or ""
    return {
        "id": str(deployment.pk),
        "organization_id": str(deployment.organization_id),
        "name": deployment.name,
        "channels": list(deployment.channels or []),
        "kind": kind,
        "target_name": target_name,
        "description": description,
    }


async def _json(send, status: int, detail: str, code: str, headers: list | None = None) -> None:
    body = json.dumps(
        {
            "detail": detail,
            "type": "not_authenticated" if status == 401 else "not_found",
            "code": code,
            "errors": [],
            "request_id": "",
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _header(scope, name: bytes) -> str:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


class DeploymentMCPApp:
    """ASGI app for ``/mcp/deployments/{id}/``: deployment-key check, then the MCP transport."""

    def __init__(self):
        self.server = build_server()
        #: the session manager, the event set once it runs, and the task that runs it (made on first use)
        self._started: tuple[StreamableHTTPSessionManager, asyncio.Event, asyncio.Task] | None = None

    async def _session_manager(self) -> StreamableHTTPSessionManager:
        if self._started is None or self._started[2].done():
            manager = StreamableHTTPSessionManager(
                app=self.server, stateless=True, json_response=True, security_settings=_security_settings()
            )
            ready = asyncio.Event()

            async def run():
                async with manager.run():
                    ready.set()
                    await asyncio.Event().wait()  # until the loop closes with the process

            self._started = (manager, ready, asyncio.get_running_loop().create_task(run()))
        current, running, runner = self._started  # names of their own: run() closes over manager and ready
        waiter = asyncio.ensure_future(running.wait())
        done, _ = await asyncio.wait({waiter, runner}, return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            raise RuntimeError("the MCP session manager did not start") from runner.exception()
        return current

    async def __call__(self, scope, receive, send):
        match = _PATH_RE.match(scope.get("path", ""))
        if scope["type"] != "http" or match is None:
            await _json(
                send, 404, "Not found. The MCP endpoint of a deployment is /mcp/deployments/{id}/.", "GENERAL_001"
            )
            return
        authorization = _header(scope, b"authorization")
        raw_key = (
            authorization[7:].strip()
            if authorization.lower().startswith("bearer ")
            else _header(scope, b"x-deployment-key").strip()
        )
        info = await database_sync_to_async(_authenticate)(match["id"], raw_key)
        if info is None:
            await _json(
                send,
                401,
                "Deployment key is invalid, or the deployment is stopped.",
                "AUTH_001",
                [(b"www-authenticate", b'Bearer realm="mcp"')],
            )
            return
        if "mcp" not in info["channels"]:
            await _json(
                send, 404, "This deployment has no MCP channel (deploy it with channels ['mcp']).", "GENERAL_001"
            )
            return
        manager = await self._session_manager()
        inner: dict[str, Any] = dict(scope)
        inner[SCOPE_KEY] = info
        await manager.handle_request(inner, receive, send)


application = DeploymentMCPApp()
