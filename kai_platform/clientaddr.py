"""The client's address and scheme, with forwarded headers honoured from trusted proxies only.

``KAI_TRUSTED_PROXIES`` lists the networks (CIDR) of the reverse proxies in front of the web
processes. When the direct peer is in one of them, ``X-Forwarded-For`` (else ``Forwarded``) is read
from the right: the rightmost address that is not itself a trusted proxy is the client, and
``X-Forwarded-Proto`` (or the ``proto`` of that ``Forwarded`` element) its scheme. From any other
peer the headers are ignored and the peer's address counts: a client cannot choose its address.

``TrustedProxyMiddleware`` wraps the whole ASGI application, so HTTP requests (``REMOTE_ADDR``,
``request.is_secure()``) and sockets (``scope["client"]``) see the same answer; everything else
reads it through ``client_address``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.signals import setting_changed

from kai_platform.asgitypes import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from django.http import HttpRequest
    from rest_framework.request import Request

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
UNKNOWN = "unknown"
_PROTO_HEADER = b"x-forwarded-proto"
_SCHEMES = {"http": {"http": "http", "https": "https"}, "websocket": {"http": "ws", "https": "wss"}}


@lru_cache(maxsize=1)
def trusted_networks() -> tuple[Network, ...]:
    return tuple(
        ipaddress.ip_network(cidr.strip(), strict=False)
        for cidr in getattr(settings, "KAI_TRUSTED_PROXIES", [])
        if cidr.strip()
    )


def _forget(*, setting: str, **kwargs: Any) -> None:
    if setting == "KAI_TRUSTED_PROXIES":
        trusted_networks.cache_clear()


setting_changed.connect(_forget, dispatch_uid="kai-trusted-proxies")


def parse_address(value: str) -> Address | None:
    """An IP from a header token: ``1.2.3.4``, ``1.2.3.4:80``, ``[2001:db8::1]:80``, ``2001:db8::1``;
    IPv4-mapped IPv6 becomes IPv4. None for anything else (``unknown``, ``_hidden``, garbage)."""
    value = value.strip().strip('"')
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:
        value = value.partition(":")[0]  # IPv4 with a port
    try:
        address = ipaddress.ip_address(value.partition("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def is_trusted(address: Address | None, networks: Iterable[Network] | None = None) -> bool:
    networks = trusted_networks() if networks is None else networks
    return address is not None and any(address in network for network in networks)


def _split_outside_quotes(value: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in value:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def parse_forwarded(value: str) -> list[dict[str, str]]:
    """RFC 7239 ``Forwarded``: one dict per element (``for``, ``proto``, ``by``, ``host``), in order."""
    elements = []
    for element in _split_outside_quotes(value, ","):
        pairs = {}
        for pair in _split_outside_quotes(element, ";"):
            name, sep, raw = pair.partition("=")
            if sep:
                pairs[name.strip().lower()] = raw.strip().strip('"')
        if pairs:
            elements.append(pairs)
    return elements


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    """All values of one header, joined with commas in arrival order (RFC 9110 list semantics)."""
    values = [value.decode("latin-1") for key, value in headers if key.lower() == name]
    return ",".join(values) if values else None


def _hops(headers: Iterable[tuple[bytes, bytes]]) -> tuple[list[str], list[str | None]]:
    """The forwarded-for hops (client first) and each one's proto when the header pairs them."""
    xff = _header(headers, b"x-forwarded-for")
    if xff is not None:
        hops = [hop.strip() for hop in xff.split(",")]
        protos: list[str | None] = [
            p.strip().lower() for p in (_header(headers, _PROTO_HEADER) or "").split(",") if p.strip()
        ]
        if len(protos) != len(hops):  # one value set by the edge, or none: it applies to the client hop
            protos = [protos[-1] if protos else None] * len(hops)
        return hops, protos
    forwarded = _header(headers, b"forwarded")
    if forwarded is not None:
        elements = parse_forwarded(forwarded)
        return [e.get("for", "") for e in elements], [(e.get("proto") or "").lower() or None for e in elements]
    return [], []


def resolve(
    peer: str | None, headers: Iterable[tuple[bytes, bytes]], networks: Iterable[Network] | None = None
) -> tuple[str | None, str | None]:
    """``(client address, forwarded proto)`` for a connection from ``peer`` carrying ``headers``
    (ASGI ``(name, value)`` byte pairs). Headers count only when the peer is a trusted proxy; the
    walk goes right to left through trusted proxies and stops at the first other address, or at
    a hop that is not an address (the trusted proxy that passed it on is then the client)."""
    networks = trusted_networks() if networks is None else networks
    peer_address = parse_address(peer or "")
    if not is_trusted(peer_address, networks):
        return peer, None
    hops, protos = _hops(headers)
    client, proto = str(peer_address), None
    for hop, hop_proto in zip(reversed(hops), reversed(protos)):
        address = parse_address(hop)
        if address is None:
            break
        client, proto = str(address), hop_proto
        if not is_trusted(address, networks):
            break
    return client, proto


def client_address(request: HttpRequest | Request) -> str:
    """The client's address for a Django/DRF request (``REMOTE_ADDR`` after the middleware)."""
    request = getattr(request, "_request", request)
    return request.META.get("REMOTE_ADDR") or UNKNOWN


def scope_address(scope: Scope) -> str:
    """The client's address for an ASGI scope (after the middleware)."""
    client = scope.get("client")
    return client[0] if client and client[0] else UNKNOWN


class TrustedProxyMiddleware:
    """ASGI middleware for HTTP and WebSocket scopes: behind a trusted proxy, ``scope["client"]``
    and ``scope["scheme"]`` become the forwarded ones; from any other peer the forwarded-proto
    header is dropped so no later layer (Django's ``SECURE_PROXY_SSL_HEADER``) can be fooled."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        if scope["type"] in _SCHEMES:
            scope = self.rewrite(scope)
        return await self.app(scope, receive, send)

    @staticmethod
    def rewrite(scope: Scope) -> Scope:
        client = scope.get("client") or (None, 0)
        headers = scope.get("headers") or []
        networks = trusted_networks()
        if not is_trusted(parse_address(client[0] or ""), networks):
            if any(key.lower() == _PROTO_HEADER for key, _ in headers):
                scope = {**scope, "headers": [(k, v) for k, v in headers if k.lower() != _PROTO_HEADER]}
            return scope
        address, proto = resolve(client[0], headers, networks)
        scope = {**scope, "client": [address, client[1] if address == client[0] else 0]}
        scheme = _SCHEMES[scope["type"]].get(proto or "")
        if scheme and proto:
            scope["scheme"] = scheme
            kept = [(k, v) for k, v in headers if k.lower() != _PROTO_HEADER]
            scope["headers"] = [*kept, (_PROTO_HEADER, proto.encode("latin-1"))]
        return scope
