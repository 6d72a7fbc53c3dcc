"""Credential re-checks and connection-lease refreshes for every open socket of a process, in one loop.

An authenticated socket registers here (``add``) and leaves when it closes (``discard``). Instead
of a task per socket sleeping and re-checking its own credential, one timer per process ticks every
``KAI_WS_RECHECK_SECONDS`` and checks every registered socket in one batch: the revocation keys of
all JWTs in one Redis ``MGET`` (the keys ``credential_still_valid`` reads), the API keys still valid
in one SQL query, and every socket's per-user/per-IP lease refreshed in one Redis pipeline. Sockets
whose credential was revoked are closed (``AUTHENTICATION_FAILED``, 1008) — within one interval,
as before. A credential with an expiry gets a ``loop.call_at`` timer of its own, so the socket still
closes at the instant it expires, not at the next tick (and one ``KAI_WS_EXPIRY_WARNING_SECONDS``
before, for ``disconnect_warning``, docs/realtime.md). An idle socket thus costs a registry entry
and at most one timer handle (bench B7), and the checks cost one round trip per interval, not one
per socket.

One watcher per process: the process's event loop is the one the sockets run on (a new loop —
each async test has its own — starts a fresh registry).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.core.cache import cache

from kai_platform import ports
from kai_platform.realtime import limits
from kai_platform.realtime.contexts import PerLoop
from kai_platform.tenancy.authentication import revoked_jti_key

if TYPE_CHECKING:
    from kai_platform.realtime.protocols import WatchedSocket

logger = logging.getLogger("kai.realtime")

#: what the batch check reads of a socket: credential kind, jti or API key id, expiry, organization id,
#: user id, client address, lease member
Entry = tuple[str, Any, datetime | None, Any, Any, str, str]


class _Watcher:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.sockets: dict[
            WatchedSocket, tuple[asyncio.TimerHandle, ...] | None
        ] = {}  # consumer -> its expiry and warning timers (or None); insertion-ordered
        self.tick: asyncio.TimerHandle | None = None
        self.checking = False

    # --- registry -------------------------------------------------------------------------
    def add(self, consumer: WatchedSocket) -> None:
        timers: tuple[asyncio.TimerHandle, ...] | None = None
        expires_at = consumer.authenticated_identity.expires_at
        if expires_at is not None:
            delay = max(0.0, (expires_at - datetime.now(UTC)).total_seconds())
            timers = (self.loop.call_later(delay, consumer.credential_lapsed),)
            warn_in = delay - settings.KAI_WS_EXPIRY_WARNING_SECONDS
            if warn_in > 0:  # a credential with less time left than the warning window gets no warning
                timers += (self.loop.call_later(warn_in, consumer.credential_expiring, expires_at),)
        self.sockets[consumer] = timers
        self._schedule()

    def discard(self, consumer: WatchedSocket) -> None:
        for timer in self.sockets.pop(consumer, None) or ():
            timer.cancel()
        if not self.sockets and self.tick is not None:
            self.tick.cancel()
            self.tick = None

    # --- the tick -------------------------------------------------------------------------
    def _schedule(self) -> None:
        """Next tick one interval from now — or sooner, if the interval setting shrank."""
        if self.checking or not self.sockets:
            return
        at = self.loop.time() + settings.KAI_WS_RECHECK_SECONDS
        if self.tick is not None:
            if self.tick.when() <= at:
                return
            self.tick.cancel()
        self.tick = self.loop.call_at(at, self._on_tick)

    def _on_tick(self) -> None:
        self.tick = None
        self.checking = True
        self.loop.create_task(self._check())

    async def _check(self) -> None:
        try:
            batch = [consumer for consumer in self.sockets if not consumer._closing]
            if batch:
                try:
                    valid = await database_sync_to_async(_check_batch)([_entry(consumer) for consumer in batch])
                except Exception:
                    logger.warning("credential re-check failed; will retry", exc_info=True)
                else:
                    for consumer, ok in zip(batch, valid):
                        if not ok:
                            consumer.credential_lapsed()
        finally:
            self.checking = False
            self._schedule()


def _entry(consumer: WatchedSocket) -> Entry:
    identity = consumer.authenticated_identity
    return (
        identity.kind,
        identity.credential,
        identity.expires_at,
        identity.organization_id,
        identity.user_id,
        consumer.ip,
        consumer.client_id,
    )


def _check_batch(entries: list[Entry]) -> list[bool]:
    """``credential_still_valid`` for many credentials at once, plus the lease refresh."""
    now = datetime.now(UTC)
    jtis = {credential for kind, credential, *_ in entries if kind == "jwt"}
    revoked: set[Any] = set()
    if jtis:
        keys = {revoked_jti_key(jti): jti for jti in jtis}
        revoked = {keys[key] for key in cache.get_many(list(keys))}
    key_ids = {credential for kind, credential, *_ in entries if kind != "jwt"}
    live_keys = ports.live_api_key_ids(key_ids=key_ids)
    members = _live_members(entries)
    valid = []
    for kind, credential, expires_at, org_id, user_id, *_ in entries:
        if expires_at is not None and expires_at <= now:
            valid.append(False)
        elif kind == "jwt":
            valid.append(credential not in revoked and (user_id, org_id) in members)
        else:
            valid.append(credential in live_keys)
    limits.refresh_many([(user_id, ip, member) for (*_, user_id, ip, member), ok in zip(entries, valid) if ok])
    return valid


def _live_members(entries: list[Entry]) -> set[tuple[Any, Any]]:
    """``(user id, organization id)`` of the JWT sockets whose user is still active and still a
    member (``(user id, None)`` for sockets without an organization): a user deactivated or removed
    (SCIM, an admin) loses their sockets within one interval, like a revoked token."""
    jwts = [entry for entry in entries if entry[0] == "jwt"]
    return ports.live_members(
        user_ids={entry[4] for entry in jwts}, with_no_organization=any(entry[3] is None for entry in jwts)
    )


_watcher = PerLoop(_Watcher)


def add(consumer: WatchedSocket) -> None:
    _watcher.current().add(consumer)


def discard(consumer: WatchedSocket) -> None:
    if _watcher.instance is not None:
        _watcher.instance.discard(consumer)


def watched_count() -> int:
    """Sockets this process is watching (for tests and diagnostics)."""
    return len(_watcher.instance.sockets) if _watcher.instance is not None else 0


def sockets() -> list[WatchedSocket]:
    """The authenticated sockets of this process (the shutdown drain warns them)."""
    return list(_watcher.instance.sockets) if _watcher.instance is not None else []
