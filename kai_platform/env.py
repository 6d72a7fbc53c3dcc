"""Typed access to environment variables: the only source of settings."""

from __future__ import annotations

import ipaddress
import os
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from exc


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from exc


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default or [])
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_cidrs(name: str) -> list[str]:
    """A comma-separated list of networks (``10.0.0.0/8``, ``::1/128``, a bare address = one host)."""
    networks = []
    for item in env_list(name):
        try:
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError as exc:
            raise ImproperlyConfigured(f"{name}: {item!r} is not a network (CIDR) or an address") from exc
    return networks


def parse_database_url(url: str) -> dict[str, Any]:
    """postgres://user:pass@host:port/name?opt=v → Django DATABASES entry.

    A unix socket is given as ``postgresql://user@/name?host=/path/to/dir`` (libpq style).
    """
    parsed = urlparse(url)
    if parsed.scheme not in {"postgres", "postgresql", "pgsql"}:
        raise ImproperlyConfigured(f"DATABASE_URL must be a PostgreSQL URL, got scheme {parsed.scheme!r}")
    query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    host = query.pop("host", None) or (unquote(parsed.hostname) if parsed.hostname else "")
    port = query.pop("port", None) or parsed.port or ""
    return {
        "ENGINE": "kai_platform.db.postgresql",  # Django's, with the busy-aware pool (kai_platform.db.pool)
        "NAME": unquote(parsed.path.lstrip("/")) or "postgres",
        "USER": unquote(parsed.username or ""),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": host,
        "PORT": str(port),
        "OPTIONS": query,
    }


def async_redis_options(url: str) -> dict[str, Any]:
    """Options for an asyncio Redis client of ``url`` (the channel layer, socket stream relays).

    No socket timeout: with one set, redis-py sends each command through ``asyncio.wait_for``,
    which on Python 3.11 swallows a cancellation that races the send (gh-86296) -- a disconnected
    socket's channel-layer receive then kept polling Redis forever instead of stopping. Readers
    block in bounded reads anyway; a health check finds dead peers, and so does TCP keepalive on
    a TCP connection (a ``unix://`` socket has no keepalive: redis-py's unix connection refuses
    the option, which broke every socket of ``make run``'s embedded Redis).
    """
    options = {"socket_timeout": None, "health_check_interval": 30}
    if urlparse(url).scheme != "unix":
        options["socket_keepalive"] = True
    return options
