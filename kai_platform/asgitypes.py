"""The ASGI shapes the kernel's middleware and consumers are typed with (scopes as plain dicts,
messages as mappings: the servers and Django hand them over as such)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

Scope = dict[str, Any]
Message = Mapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[Any]]
Headers = list[tuple[bytes, bytes]]
