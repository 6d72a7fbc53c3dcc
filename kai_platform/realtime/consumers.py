"""The one socket base consumer (docs/sockets.md): every WebSocket endpoint builds on it.

It owns authentication (``?token=`` or a first ``{"type": "auth", "token": …}`` message within
``KAI_WS_AUTH_TIMEOUT`` seconds, JWT or platform API key, the same check as REST), the Origin
check, connection limits per user and per IP (Redis, all processes), the message size cap, the
per-connection message rate limit, and closing the socket when its credential expires or is
revoked (one process-wide watcher re-checks every socket in a batch: ``watch.py``). Subclasses
implement ``on_authenticated``, ``handle_message`` and ``on_event``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import socket
import time
import uuid
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlparse

import orjson
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from rest_framework import exceptions

from kai_platform.api.errors import RateLimited
from kai_platform.asgitypes import Message, Receive, Scope, Send
from kai_platform.clientaddr import scope_address
from kai_platform.realtime import limits, watch
from kai_platform.server import drain
from kai_platform.tenancy.authentication import authenticate_credential
from kai_platform.tenancy.context import AuthContext

logger = logging.getLogger("kai.realtime")

SERVER_ID = f"{socket.gethostname()}:{os.getpid()}"
#: what a client should do on each ``disconnect_warning`` reason
ACTIONS = {
    "token_expiry": "Refresh the access token and reconnect with it.",
    "server_shutdown": "Reconnect (another server process takes the connection).",
    "maintenance": "Reconnect after the maintenance window.",
}
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009


class SocketIdentity:
    """What an authenticated socket keeps of its credential: ids, role, expiry — no model rows."""

    __slots__ = ("user_id", "organization_id", "role", "kind", "session_id", "credential", "expires_at")

    def __init__(self, user: Any, auth: AuthContext) -> None:
        self.user_id = user.pk
        self.organization_id = auth.organization.pk if auth.organization is not None else None
        self.role = auth.role
        self.kind = auth.kind
        self.session_id = auth.session_id
        self.credential = auth.claims.get("jti", "") if auth.kind == "jwt" else auth.api_key.pk
        self.expires_at = auth.expires_at


def origin_allowed(origin: bytes | str | None) -> bool:
    """A browser's ``Origin`` must be an allowed host (``ALLOWED_HOSTS``, ``CORS_ALLOWED_ORIGINS``);
    no ``Origin`` (non-browser clients) passes: they authenticate with a token (docs/decisions.md)."""
    if not origin:
        return True

    parsed = urlparse(origin.decode("latin-1") if isinstance(origin, bytes) else origin)
    if parsed.netloc and f"{parsed.scheme}://{parsed.netloc}" in settings.CORS_ALLOWED_ORIGINS:
        return True
    host, _port = split_domain_port(parsed.netloc)
    return bool(host) and validate_host(host, settings.ALLOWED_HOSTS)


def close_reason(error_code: str, message: str) -> str:
    """A close frame's reason: the error code first, then the message, within 123 bytes of UTF-8."""
    return f"{error_code}: {message}".encode()[:123].decode("utf-8", "ignore")


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class KaiSocketConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]  # channels ships no types
    server_version = "1.0.0"
    #: refuse credentials not bound to an organization (the console socket lets staff in without one)
    requires_organization = True
    #: False: the socket gets no channel-layer channel of its own; it joins organization groups
    #: through the process's relay (``relay.join``) and receives their events via ``relay_message``
    per_socket_channel = True
    #: False: once ``on_authenticated`` has run, the socket keeps only ``self.identity`` (ids, role,
    #: expiry) and its credential, not the user/membership/organization rows; a handler that acts as
    #: the user gets fresh rows from ``await self.identity_rows()`` (the credential checked again)
    keeps_identity_rows = True

    # Per-socket state starts as these class-level defaults, so an idle socket's ``__dict__`` holds
    # only what it changed (bench B7: memory per idle socket); containers are made on first use.
    identity: SocketIdentity | None = None  # set once authenticated
    user = None
    auth = None
    organization = None
    _credential: str | None = None  # the raw credential, kept instead of the rows (keeps_identity_rows False)
    _tasks: list[asyncio.Future[Any]] | None = None  # background tasks of this socket (``_spawn``)
    _message_times: collections.deque[float] | None = None  # the message-rate window, from the first message
    _rate_warned = False
    _limits_held = False
    _closing = False
    _auth_timer: asyncio.TimerHandle | None = None  # the authentication window of a socket without ?token=
    _dispatch_lock: asyncio.Lock | None = None  # one message at a time: client messages and relayed events

    @property
    def authenticated_identity(self) -> SocketIdentity:
        """``identity`` where the socket has authenticated (every handler after ``on_authenticated``)."""
        if self.identity is None:
            raise RuntimeError("the socket has not authenticated")
        return self.identity

    # --- lifecycle ------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.per_socket_channel:
            await super().__call__(scope, receive, send)
            return
        # Channels' AsyncConsumer.__call__ without a channel of the socket's own (relay.py). With one
        # source of messages, await_many_dispatch's extra task and asyncio.wait per message are not needed.
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass

    async def dispatch(self, message: Message) -> None:
        if self._dispatch_lock is None:
            self._dispatch_lock = asyncio.Lock()
        async with self._dispatch_lock:
            await super().dispatch(message)

    def relay_message(self, message: Message) -> None:
        """A channel-layer message of one of this socket's groups, from the process's relay."""
        if not self._closing:
            self._spawn(self._dispatch_relayed(message))

    async def _dispatch_relayed(self, message: Message) -> None:
        if self._dispatch_lock is None:
            self._dispatch_lock = asyncio.Lock()
        async with self._dispatch_lock:
            if not self._closing:
                await super().dispatch(message)

    async def connect(self) -> None:
        self.client_id = f"client_{uuid.uuid4().hex[:12]}"
        self.connected_at = time.monotonic()
        self.query = {k: v[-1] for k, v in parse_qs(self.scope.get("query_string", b"").decode()).items()}
        self.ip = scope_address(self.scope)
        await self.accept()  # a refusal is a close frame with a code and reason, not a bare HTTP 403
        if not self._origin_allowed():
            await self.refuse("PERMISSION_DENIED", "This Origin may not open sockets here.")
            return
        token = self.query.pop("token", None)
        if token:
            await self._authenticate(token)
        else:
            self._auth_timer = asyncio.get_running_loop().call_later(
                settings.KAI_WS_AUTH_TIMEOUT, self._auth_window_over
            )

    async def disconnect(self, code: int) -> None:
        self._closing = True
        self._cancel_auth_timer()
        for task in self._tasks or ():
            task.cancel()
        await self._release_lease()
        await self.on_disconnect(code)

    # --- authentication -------------------------------------------------------------------
    def _origin_allowed(self) -> bool:
        return origin_allowed(dict(self.scope.get("headers") or []).get(b"origin"))

    def _auth_window_over(self) -> None:
        self._auth_timer = None
        if self.identity is None and not self._closing:
            self._spawn(self.refuse("AUTHENTICATION_FAILED", "No credential within the authentication window."))

    def _cancel_auth_timer(self) -> None:
        if self._auth_timer is not None:
            self._auth_timer.cancel()
            self._auth_timer = None

    async def _authenticate(self, raw_token: str) -> bool:
        try:
            user, auth = await database_sync_to_async(authenticate_credential)(
                raw_token, organization_ref=self.query.get("organization"), address=self.ip
            )
        except (exceptions.AuthenticationFailed, exceptions.PermissionDenied) as exc:
            await self.refuse("AUTHENTICATION_FAILED", str(exc.detail))
            return False
        except RateLimited as exc:
            await self.refuse("RATE_LIMIT_EXCEEDED", str(exc.detail), retry_after=exc.retry_after)
            return False
        if auth.organization is None and self.requires_organization:
            await self.refuse("PERMISSION_DENIED", "The credential is not bound to an organization.")
            return False
        refused = await limits.acquire(user.pk, self.ip, self.client_id, self._lease_info(user, auth))
        if refused:
            await self._refuse_limit(refused)
            return False
        self._limits_held = True
        self._cancel_auth_timer()
        self.identity = SocketIdentity(user, auth)
        self.user, self.auth, self.organization = user, auth, auth.organization
        watch.add(self)  # re-checked with every socket of the process (kai_platform/realtime/watch.py)
        await self.on_authenticated()
        if not self.keeps_identity_rows:
            self._credential = raw_token
            del self.user, self.auth, self.organization  # back to the class defaults (None)
        return True

    def _lease_info(self, user: Any, auth: AuthContext) -> dict[str, str]:
        """What the operator console lists for this socket (``limits.open_sockets``)."""
        headers = dict(self.scope.get("headers") or [])
        return {
            "user": user.email,
            "organization_id": str(auth.organization.pk) if auth.organization else "",
            "path": self.scope.get("path", ""),
            "socket": type(self).__name__,
            "server": SERVER_ID,
            "client_fingerprint": headers.get(b"x-client-fingerprint", b"").decode("latin-1")[:200]
            or self.query.get("client_fingerprint", "")[:200],
            "client_version": headers.get(b"x-client-version", b"").decode("latin-1")[:100]
            or self.query.get("client_version", "")[:100],
        }

    async def _refuse_limit(self, refused: str) -> None:
        if refused in ("user", "ip"):
            limit = settings.KAI_WS_MAX_PER_USER if refused == "user" else settings.KAI_WS_MAX_PER_IP
            await self.refuse(
                "CONNECTION_LIMIT_EXCEEDED", f"At most {limit} concurrent connections per {refused}.", retry_after=30
            )
        else:
            await self.refuse(
                "RATE_LIMIT_EXCEEDED",
                f"At most {settings.KAI_WS_CONNECTS_PER_MINUTE} new connections a minute per {refused.split('_')[0]}.",
                retry_after=60,
            )

    async def identity_rows(self) -> tuple[Any, AuthContext | None]:
        """``(user, auth)`` of the socket's credential, for a handler that acts as the user; with
        ``keeps_identity_rows`` False they are loaded again (the credential checked again: a revoked or
        expired one closes the socket and gives ``(None, None)``)."""
        if self._credential is None:
            return self.user, self.auth
        try:
            rows: tuple[Any, AuthContext] = await database_sync_to_async(authenticate_credential)(
                self._credential, organization_ref=self.query.get("organization")
            )
            return rows
        except (exceptions.AuthenticationFailed, exceptions.PermissionDenied):
            self.credential_lapsed()
            return None, None

    def credential_expiring(self, expires_at: datetime) -> None:
        """The credential expires soon (the watcher's warning timer): ``disconnect_warning``."""
        if not self._closing:
            seconds = max(0.0, (expires_at - datetime.now(UTC)).total_seconds())
            self._spawn(self.warn_disconnect("token_expiry", seconds, close_code=CLOSE_POLICY))

    def credential_lapsed(self) -> None:
        """The credential expired or was revoked (called by the process's credential watcher)."""
        if not self._closing:
            self._closing = True  # once: the expiry timer and a re-check may both fire
            self._spawn(self.refuse("AUTHENTICATION_FAILED", "The credential has expired or was revoked."))

    async def refuse(
        self, error_code: str, message: str, *, close_code: int = CLOSE_POLICY, retry_after: int | None = None
    ) -> None:
        data: dict[str, Any] = {"error_code": error_code, "error_message": message, "close_code": close_code}
        if retry_after is not None:
            data["retry_after"] = retry_after
        try:
            await self.send_envelope("connection_error", data)
        finally:
            self._closing = True
            await self._release_lease()
            await self.close(code=close_code, reason=close_reason(error_code, message))

    async def _release_lease(self) -> None:
        await limits.release_lease(self)

    # --- receiving ------------------------------------------------------------------------
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        raw = text_data if text_data is not None else bytes_data
        assert raw is not None  # a websocket.receive message carries text or bytes
        size = len(raw.encode() if isinstance(raw, str) else raw or b"")
        if size > settings.KAI_WS_MAX_MESSAGE_BYTES:
            await self.refuse(
                "MESSAGE_TOO_LARGE",
                f"Messages are limited to {settings.KAI_WS_MAX_MESSAGE_BYTES} bytes.",
                close_code=CLOSE_TOO_BIG,
            )
            return
        if not await self._within_rate():
            return
        try:
            message = orjson.loads(raw)
            if not isinstance(message, dict) or not isinstance(message.get("type"), str):
                raise ValueError("a message is a JSON object with a string 'type'")
        except (orjson.JSONDecodeError, ValueError) as exc:
            await self.send_error("INVALID_MESSAGE_FORMAT", f"Malformed message: {exc}")
            return
        if self.identity is None:
            if message["type"] == "auth" and isinstance(message.get("token"), str):
                await self._authenticate(message["token"])
            else:
                await self.refuse("AUTHENTICATION_FAILED", 'Authenticate first: {"type": "auth", "token": …}.')
            return
        await self.handle_message(message)

    async def _within_rate(self) -> bool:
        limit = settings.KAI_WS_MESSAGES_PER_MINUTE
        now = time.monotonic()
        times = self._message_times
        if times is None:
            times = self._message_times = collections.deque()
        while times and now - times[0] > 60:
            times.popleft()
        times.append(now)
        count = len(times)
        if count <= limit:
            if count >= int(limit * 0.9) and not self._rate_warned:
                self._rate_warned = True
                await self._rate_warning(count, limit, "Rate limit approaching: reduce message frequency")
            elif count < int(limit * 0.9):
                self._rate_warned = False
            return True
        if count == limit + 1:
            await self._rate_warning(count, limit, "Rate limit exceeded: this message was dropped; the next closes")
            return False
        await self.refuse("RATE_LIMIT_EXCEEDED", f"More than {limit} messages per minute.", retry_after=60)
        return False

    async def _rate_warning(self, count: int, limit: int, action: str) -> None:
        first = self._message_times[0] if self._message_times else time.monotonic()
        reset = datetime.fromtimestamp(time.time() + 60 - (time.monotonic() - first), UTC)
        await self.send_envelope(
            "rate_limit_warning",
            {
                "limit_type": "messages_per_minute",
                "current_usage": count,
                "limit": limit,
                "reset_time": reset.isoformat().replace("+00:00", "Z"),
                "recommended_action": action,
            },
        )

    async def warn_disconnect(self, reason: str, seconds: float, *, close_code: int = CLOSE_GOING_AWAY) -> None:
        """Seed 004's ``disconnect_warning``: the server closes this socket in ``seconds``."""
        await self.send_envelope(
            "disconnect_warning",
            {
                "reason": reason,
                "seconds_left": round(seconds, 1),
                "close_code": close_code,
                "recommended_action": ACTIONS.get(reason, "Reconnect after the close."),
                "disconnect_at": datetime.fromtimestamp(time.time() + seconds, UTC).isoformat().replace("+00:00", "Z"),
            },
        )

    # --- sending --------------------------------------------------------------------------
    async def send_envelope(self, type_: str, data: dict[str, Any], **extra: Any) -> None:
        payload: dict[str, Any] = {"type": type_, "timestamp": now_iso(), "data": data}
        payload.update(extra)
        await self.send(text_data=orjson.dumps(payload, default=str).decode())

    async def send_error(self, error_code: str, message: str, **data: Any) -> None:
        await self.send_envelope("connection_error", {"error_code": error_code, "error_message": message, **data})

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        if self._tasks is None:
            self._tasks = []
        else:
            self._tasks = [task for task in self._tasks if not task.done()]
        self._tasks.append(asyncio.ensure_future(coroutine))

    # --- for subclasses -------------------------------------------------------------------
    async def on_authenticated(self) -> None:
        raise NotImplementedError

    async def handle_message(self, message: dict[str, Any]) -> None:
        raise NotImplementedError

    async def on_disconnect(self, code: int) -> None:
        return None

    async def kai_event(self, message: Message) -> None:
        """Channel-layer delivery from ``events.services.publish``."""
        await self.on_event(message["event"])

    async def on_event(self, event: dict[str, Any]) -> None:
        return None


async def _warn_for_shutdown(seconds: float) -> int:
    """The server's shutdown drain (kai_platform/server/drain.py): warn every socket of the process."""
    warned = 0
    for consumer in watch.sockets():
        if consumer._closing:
            continue
        try:
            await consumer.warn_disconnect("server_shutdown", seconds)
            warned += 1
        except Exception:  # the socket went away meanwhile
            logger.debug("could not warn a socket of the shutdown", exc_info=True)
    return warned


drain.register(_warn_for_shutdown)
