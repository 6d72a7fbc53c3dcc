"""Organization-defined tools: an HTTP endpoint called with the tool's arguments, through the
same SSRF guard as the http_request built-in."""

from __future__ import annotations

from apps.agents.selectors import network_allowlist
from apps.agents.tools.base import ToolContext, ToolError
from kai_platform.llm.netguard import BlockedAddress, check_url, guarded_http_client

CUSTOM_CONFIG_SCHEMA = {
    "type": "object",
    "required": ["api_endpoint"],
    "properties": {
        "api_endpoint": {"type": "string", "pattern": "^https?://", "maxLength": 2000},
        "method": {"type": "string", "enum": ["GET", "POST", "PUT", "PATCH"]},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "parameters": {"type": "object"},
        "timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 60},
    },
}


def guarded_request(
    *,
    organization,
    method: str,
    url: str,
    headers: dict,
    params=None,
    json_body=None,
    timeout: float = 10.0,
    max_bytes: int = 65536,
) -> dict:
    # deferred: heavy — the HTTP client stack, loaded on first use to keep process start fast
    import httpx2

    allowlist = network_allowlist(organization=organization)
    try:
        check_url(url, allowlist)
        with guarded_http_client(allowlist, timeout=timeout) as client:
            with client.stream(method, url, headers=headers, params=params, json=json_body) as response:
                body = b""
                for piece in response.iter_bytes():
                    body += piece
                    if len(body) > max_bytes:
                        break
                truncated = len(body) > max_bytes
                return {
                    "status": response.status_code,
                    "url": str(response.url),
                    "headers": {
                        k: v
                        for k, v in response.headers.items()
                        if k.lower() in ("content-type", "content-length", "date", "last-modified")
                    },
                    "body": body[:max_bytes].decode(response.encoding or "utf-8", errors="replace"),
                    "truncated": truncated,
                }
    except BlockedAddress as exc:
        raise ToolError(f"refused: {exc}") from exc
    except httpx2.TimeoutException as exc:
        raise ToolError(f"{url} did not answer within {timeout:g} s") from exc
    except httpx2.HTTPError as exc:
        for inner in (exc.__cause__, exc.__context__):
            if isinstance(inner, BlockedAddress):
                raise ToolError(f"refused: {inner}") from exc
        raise ToolError(f"request to {url} failed: {type(exc).__name__}: {exc}") from exc


def run_custom(tool, arguments: dict, context: ToolContext):
    config = tool.configuration or {}
    endpoint = config.get("api_endpoint")
    if not endpoint:
        raise ToolError(f"tool {tool.name!r} has no api_endpoint configured")
    method = (config.get("method") or "POST").upper()
    payload = {**(config.get("parameters") or {}), **arguments}
    return guarded_request(
        organization=context.organization,
        method=method,
        url=endpoint,
        headers=config.get("headers") or {},
        params=payload if method == "GET" else None,
        json_body=None if method == "GET" else payload,
        timeout=float(config.get("timeout_seconds") or 10),
    )
