"""What the server does between SIGTERM and stopping: stop accepting connections, let the
application warn its sockets (``disconnect_warning`` with the seconds left), wait that long, close
every WebSocket still open with 1001 (going away), then let daphne cancel what remains.

The application takes part through hooks: ``register(hook)`` with ``async hook(seconds) -> int``
(how many sockets it warned); the realtime layer registers one for its sockets.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kai_platform.server.protocol import KaiWebSocketProtocol

logger = logging.getLogger("kai.server")

#: ``async hook(seconds)`` → how many sockets it warned
DrainHook = Callable[[float], Awaitable[int | None]]
_hooks: list[DrainHook] = []


def register(hook: DrainHook) -> None:
    if hook not in _hooks:
        _hooks.append(hook)


def drain_seconds() -> float:
    """``KAI_WS_DRAIN_SECONDS`` (default 5): how long sockets are given between warning and close."""
    try:
        return max(0.0, float(os.environ.get("KAI_WS_DRAIN_SECONDS", "5")))
    except ValueError:
        return 5.0


async def warn_sockets(seconds: float) -> int:
    warned = 0
    for hook in list(_hooks):
        try:
            warned += await hook(seconds) or 0
        except Exception:
            logger.warning("drain hook %r failed", hook, exc_info=True)
    return warned


async def close_all(protocols: Iterable[KaiWebSocketProtocol], *, code: int, reason: str, timeout: float = 2.0) -> None:
    """Close every open WebSocket of ``protocols`` and wait (up to ``timeout``) for the handshakes."""
    open_ = [p for p in protocols if getattr(p, "state", None) == getattr(p, "STATE_OPEN", object())]
    for protocol in open_:
        protocol.serverClose(code=code, reason=reason)
    deadline = asyncio.get_running_loop().time() + timeout
    while any(p.state != p.STATE_CLOSED for p in open_) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
