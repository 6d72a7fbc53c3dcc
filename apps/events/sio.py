"""socket.io for seed 002 clients: ``io(url, {auth: {token}})`` on ``/socket.io/``.

python-socketio's ASGI app, served beside Channels (``kai_platform/asgi.py``). A client is
authenticated by its ``auth.token`` (or ``?token=``; JWT or platform API key, the same check as
REST and the sockets), then hears ``authenticated`` (its user). A refused connection (no or a bad
credential, a connection limit) is socket.io's own refusal: the client's ``connect_error`` with the
message and seed 002's error body as ``err.data`` (``Refused``); a credential that lapses later gets
seed 002's ``unauthorized`` (a message) and is disconnected. Limits, Origin rules, credential re-checks and the shutdown drain are the
sockets' own (``kai_platform/realtime``): a session is registered with the same connection leases,
credential watcher and relay.

Events come from the same event log as the hub socket: each web process's relay hands the
organization's events to its local sessions, which emit the seed 002 names
(``agent:status_changed``, ``workflow:completed``…) with ``catalog.shape``'s payload — so a client
hears them whichever web process it is connected to. Sessions are kept by a Redis client manager
(``AsyncRedisManager``), so ``emit``/``disconnect`` of a session reach it from any process. Client
events (``agent:execute``, ``workflow:execute``…) run through the hub's adapters
(``client_events.run``: the REST route's permission checks, serializer and service); the answer is
the acknowledgement and an event of the same name, an error is ``error {error_code, status…}``.
"""

from __future__ import annotations

import asyncio
import collections
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import parse_qs

import socketio
from channels.db import database_sync_to_async
from django.conf import settings
from rest_framework import exceptions

from apps.accounts.serializers import UserSerializer
from apps.events import catalog, client_events
from apps.events.consumers import REPLAY_BATCH, SeenSeqs, _events_after
from kai_platform.realtime import limits, relay, watch
from kai_platform.realtime.consumers import SERVER_ID, SocketIdentity, origin_allowed
from kai_platform.realtime.groups import org_group
from kai_platform.tenancy.authentication import authenticate_credential

#: internal event type → the seed 002 names it is emitted as
SEED_002_NAMES = {
    kind: tuple(n for n in names if n in catalog.SEED_002_EVENTS) for kind, names in catalog.PUBLIC_NAMES.items()
}
#: seed 002's positional arguments of each client event, by name (``workflow:execute(workflow_id, data?)``)
POSITIONAL = {
    "workflow:execute": ("workflow_id", "data"),
    "workflow:stop": ("execution_id",),
    "agent:subscribe": ("agent_id",),
    "agent:unsubscribe": ("agent_id",),
}


def _manager():
    return socketio.AsyncRedisManager(settings.REDIS_URL, channel=f"{settings.KAI_REDIS_PREFIX}:socketio")


def _cors_origins(origin, environ) -> bool:
    return origin_allowed(origin)


sio = socketio.AsyncServer(
    async_mode="asgi",
    client_manager=_manager(),
    cors_allowed_origins=_cors_origins,
    logger=False,
    engineio_logger=False,
    max_http_buffer_size=settings.KAI_WS_MAX_MESSAGE_BYTES,
)
application = socketio.ASGIApp(sio, socketio_path="socket.io")
PATH_PREFIX = "/socket.io/"

_sessions: dict[str, Session] = {}


class Session:
    """One socket.io client, shaped like a socket consumer for the relay and the credential watcher."""

    def __init__(self, sid: str, ip: str, scope: dict):
        self.sid, self.ip, self.scope = sid, ip, scope
        self.client_id = f"sio_{uuid.uuid4().hex[:12]}"
        self.identity: SocketIdentity | None = None
        self.credential: str | None = None
        self.agents: set[str] = set()
        self.seen = SeenSeqs()  # bounded, like the hub's
        self.message_times: collections.deque = collections.deque()
        self.group: str | None = None
        self._closing = False
        self._limits_held = False

    @property
    def authenticated_identity(self) -> SocketIdentity:
        """``identity`` of a session past ``auth`` (the relay and the replay serve only those)."""
        if self.identity is None:
            raise RuntimeError("the socket.io session has not authenticated")
        return self.identity

    def within_rate(self) -> bool:
        """The sockets' message rate (``KAI_WS_MESSAGES_PER_MINUTE``) over the client's events."""
        now = time.monotonic()
        while self.message_times and now - self.message_times[0] > 60:
            self.message_times.popleft()
        self.message_times.append(now)
        return len(self.message_times) <= settings.KAI_WS_MESSAGES_PER_MINUTE

    # --- from the relay: the organization's events ------------------------------------------
    def relay_message(self, message) -> None:
        if not self._closing:
            asyncio.ensure_future(self.deliver(message["event"]))

    async def deliver(self, event: dict) -> None:
        names = SEED_002_NAMES.get(event["type"])
        if not names:
            return
        if self.agents and event.get("agent_id") and event["agent_id"] not in self.agents:
            return
        identity = self.authenticated_identity
        if not catalog.visible_to(event, role=identity.role, user_id=identity.user_id):
            return
        if not self.seen.add(event["seq"]):
            return
        for name in names:
            await emit(name, {**catalog.shape(name, event), "seq": event["seq"]}, self.sid)

    # --- from the credential watcher and the shutdown drain -----------------------------------
    def credential_lapsed(self) -> None:
        if not self._closing:
            asyncio.ensure_future(refuse(self, "The credential has expired or was revoked."))

    def credential_expiring(self, expires_at) -> None:
        seconds = max(0.0, (expires_at - datetime.now(UTC)).total_seconds())
        asyncio.ensure_future(self.warn_disconnect("token_expiry", seconds))

    async def warn_disconnect(self, reason: str, seconds: float, **kwargs) -> None:
        await emit("disconnect_warning", {"reason": reason, "seconds_left": round(seconds, 1)}, self.sid)

    async def release(self) -> None:
        self._closing = True
        if self.group:
            await relay.leave(self.group, self)
        await limits.release_lease(self)


async def emit(name: str, data, sid: str) -> None:
    """To a session of this process, straight (not through Redis): it keeps order with a disconnect."""
    await sio.emit(name, data, to=sid, ignore_queue=True)


async def refuse(session: Session, message: str) -> None:
    """Seed 002's ``unauthorized`` (a message), then the server disconnects the client."""
    await session.release()
    await emit("unauthorized", message, session.sid)
    await sio.disconnect(session.sid, ignore_queue=True)


# --- connection ------------------------------------------------------------------------------------


class Refused(socketio.exceptions.ConnectionRefusedError):
    """A refused connection: the client's ``connect_error`` has ``err.message`` and, as ``err.data``,
    seed 002's error body (``{success: false, error: {code, message, details, timestamp}}``)."""

    def __init__(self, code: str, message: str, **details):
        super().__init__(
            message,
            {
                "success": False,
                "error": {
                    "code": code,
                    "message": message,
                    "details": details,
                    "timestamp": datetime.now(UTC).isoformat(),
                },
            },
        )


@sio.event
async def connect(sid, environ, auth):
    """Admit or refuse (``Refused``: the client's ``connect_error``); an admitted client then hears
    ``authenticated`` (``_welcome``, once socket.io has accepted the connection)."""
    scope = environ.get("asgi.scope") or {}
    session = Session(sid, (scope.get("client") or ["unknown"])[0], scope)
    query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    auth = auth if isinstance(auth, dict) else {}
    token = auth.get("token") or query.get("token")
    if not isinstance(token, str) or not token:
        raise Refused("AUTH_001", "Authenticate with io(url, {auth: {token}}).")
    try:
        user, credential = await database_sync_to_async(authenticate_credential)(
            token, organization_ref=auth.get("organization") or query.get("organization")
        )
    except (exceptions.AuthenticationFailed, exceptions.PermissionDenied) as exc:
        raise Refused("AUTH_001", str(exc.detail)) from None
    if credential.organization is None:
        raise Refused("AUTH_001", "The credential is not bound to an organization.")
    refused = await limits.acquire(user.pk, session.ip, session.client_id, _lease_info(session, user, credential))
    if refused:
        details = {"limit": refused, **({"retry_after": 60} if refused.endswith("_rate") else {})}
        raise Refused(
            "GENERAL_002", f"Connection limit exceeded ({refused.replace('_', ' ')}); retry later.", **details
        )
    session._limits_held = True
    session.identity, session.credential = SocketIdentity(user, credential), token
    _sessions[sid] = session
    watch.add(session)
    resume = auth.get("last_event_id")
    asyncio.ensure_future(_welcome(session, user, credential, resume if isinstance(resume, int) else None))


async def _welcome(session: Session, user, credential, resume: int | None) -> None:
    """After socket.io sent the client its CONNECT: ``authenticated``, the missed events, then live ones."""
    for _ in range(200):  # socket.io registers the session once ``connect`` has returned
        if sio.manager.is_connected(session.sid, "/") or session._closing:
            break
        await asyncio.sleep(0.01)
    if session._closing:
        return
    session.group = org_group(credential.organization.pk)
    await relay.join(session.group, session)
    await emit("authenticated", await database_sync_to_async(_user_payload)(user, credential), session.sid)
    if resume is not None:
        await _replay(session, resume)


def _lease_info(session: Session, user, credential) -> dict:
    headers = dict(session.scope.get("headers") or [])
    return {
        "user": user.email,
        "organization_id": str(credential.organization.pk),
        "path": PATH_PREFIX,
        "socket": "socket.io",
        "server": SERVER_ID,
        "client_fingerprint": headers.get(b"x-client-fingerprint", b"").decode("latin-1")[:200],
        "client_version": headers.get(b"x-client-version", b"").decode("latin-1")[:100],
    }


def _user_payload(user, credential) -> dict:
    return {**UserSerializer(user).data, "organization_id": str(credential.organization.pk), "role": credential.role}


async def _replay(session: Session, after: int) -> None:
    """``auth.last_event_id``: the events missed since, from the event table, before live ones."""
    while True:
        batch = await database_sync_to_async(_events_after)(
            session.authenticated_identity.organization_id, after, REPLAY_BATCH
        )
        for event in batch:
            await session.deliver(event)
        if len(batch) < REPLAY_BATCH:
            return
        after = batch[-1]["seq"]


@sio.event
async def disconnect(sid, *args):
    session = _sessions.pop(sid, None)
    if session is not None and not session._closing:
        await session.release()


# --- client events ---------------------------------------------------------------------------------


def _as_data(name: str, args: tuple) -> dict:
    """Seed 002's arguments → the adapters' ``data``: an object as is, positional values by name."""
    if len(args) == 1 and isinstance(args[0], dict) and name not in ("workflow:execute",):
        return dict(args[0])
    names = POSITIONAL.get(name, ())
    data = {key: value for key, value in zip(names, args) if value is not None}
    if name == "workflow:execute" and args and isinstance(args[0], dict):
        data = dict(args[0])
    return data


async def _client_event(name: str, sid: str, args: tuple):
    session = _sessions.get(sid)
    if session is None or session.identity is None:
        return {"error_code": "AUTH_001", "error_message": "Not authenticated.", "status": 401}
    if not session.within_rate():
        limit = settings.KAI_WS_MESSAGES_PER_MINUTE
        refusal = {
            "event": name,
            "error_code": "RATE_LIMIT_EXCEEDED",
            "status": 429,
            "retry_after": 60,
            "error_message": f"More than {limit} client events a minute; this one was dropped.",
        }
        await emit("error", refusal, sid)
        return refusal
    data = _as_data(name, args)
    if name in ("agent:subscribe", "agent:unsubscribe"):
        agent_id = str(data.get("agent_id") or "")
        (session.agents.add if name == "agent:subscribe" else session.agents.discard)(agent_id)
        answer = {"agents": sorted(session.agents)}
        await emit(name, answer, sid)
        return answer
    try:
        user, credential = await database_sync_to_async(authenticate_credential)(session.credential)
    except (exceptions.AuthenticationFailed, exceptions.PermissionDenied):
        session.credential_lapsed()
        return {"error_code": "AUTH_001", "error_message": "The credential has expired or was revoked.", "status": 401}
    ok, body = await database_sync_to_async(client_events.run)(name, user=user, auth=credential, data=data)
    if not ok:
        await emit("error", {"event": name, **body}, sid)
        return body
    await emit(name, body, sid)
    return body


def _register(name: str) -> None:
    async def handler(sid, *args):
        return await _client_event(name, sid, args)

    sio.on(name, handler)


for _name in (*client_events.NAMES, "agent:subscribe", "agent:unsubscribe"):
    _register(_name)
