"""Organization event groups fanned out inside the process: one channel-layer channel per process,
not one per socket.

A Channels consumer normally gets a channel-layer channel of its own: a channels-redis receive
loop (a buffer queue, a lock waiter and two tasks re-created per message) for every open socket,
its own membership in the group, and one Redis message per socket for every event. The hub and
console sockets (``consumers.KaiSocketConsumer.per_socket_channel = False``) instead register
here: the process's relay holds ONE channel, joins each organization group (``groups.org_group``)
while at least one local socket is in it, reads the group's ``kai.event`` messages once and hands
each to the local sockets of that group (``consumer.relay_message``), which dispatch it exactly as
Channels would have (``kai_event``), one message at a time with the socket's client messages.

Events are routed by ``event["organization_id"]`` (every event carries it). A group is left once
its last local socket has gone; the channel and its receive loop stop when no group is left (each
async test's event loop thus starts and ends with none). Group memberships are renewed every
``GROUP_RENEW_SECONDS``, within channels-redis' ``group_expiry``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from channels.layers import get_channel_layer

from kai_platform.realtime.contexts import PerLoop
from kai_platform.realtime.groups import org_group

if TYPE_CHECKING:
    from kai_platform.realtime.protocols import WatchedSocket

logger = logging.getLogger("kai.realtime")

GROUP_RENEW_SECONDS = 3600.0


class _Relay:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.layer = get_channel_layer()
        self.channel: str | None = None
        self.members: dict[str, dict[WatchedSocket, None]] = {}  # group -> {consumer: None}, insertion-ordered
        self.added: set[str] = set()  # groups the channel is in
        self.adding: dict[str, asyncio.Task[None]] = {}
        self.ops = asyncio.Lock()  # group_add/group_discard/channel start-stop, one at a time
        self.pump: asyncio.Task[None] | None = None
        self.renew: asyncio.TimerHandle | None = None

    # --- membership -----------------------------------------------------------------------
    async def join(self, group: str, consumer: WatchedSocket) -> None:
        self.members.setdefault(group, {})[consumer] = None
        if group in self.added:
            return
        task = self.adding.get(group)
        if task is None:
            task = self.adding[group] = self.loop.create_task(self._add(group))
        await asyncio.shield(task)  # the socket is in the group once this returns (like group_add)

    async def leave(self, group: str, consumer: WatchedSocket) -> None:
        members = self.members.get(group)
        if members is None or consumer not in members:
            return
        del members[consumer]
        if not members:
            del self.members[group]
            await self._discard(group)

    async def _add(self, group: str) -> None:
        try:
            async with self.ops:
                if group in self.added:
                    return
                if self.channel is None:
                    self.channel = await self.layer.new_channel()
                    self.pump = self.loop.create_task(self._pump(self.channel))
                    self._schedule_renewal()
                await self.layer.group_add(group, self.channel)
                self.added.add(group)
        finally:
            self.adding.pop(group, None)

    async def _discard(self, group: str) -> None:
        async with self.ops:
            if group in self.members or group not in self.added:
                return  # joined again meanwhile, or never added
            self.added.discard(group)
            try:
                await self.layer.group_discard(group, self.channel)
            except Exception:  # Redis down: the membership expires by itself
                logger.warning("could not leave channel group %s", group, exc_info=True)
            if not self.added and not self.adding and not self.members:
                await self._stop()

    async def _stop(self) -> None:
        pump, self.pump, self.channel = self.pump, None, None
        if self.renew is not None:
            self.renew.cancel()
            self.renew = None
        if pump is not None:
            pump.cancel()
            try:
                await pump
            except asyncio.CancelledError:
                pass

    def _schedule_renewal(self) -> None:
        self.renew = self.loop.call_later(GROUP_RENEW_SECONDS, lambda: self.loop.create_task(self._renew()))

    async def _renew(self) -> None:
        async with self.ops:
            if self.channel is None:
                return
            for group in list(self.added):
                try:
                    await self.layer.group_add(group, self.channel)
                except Exception:
                    logger.warning("could not renew channel group %s", group, exc_info=True)
            self._schedule_renewal()

    # --- delivery -------------------------------------------------------------------------
    async def _pump(self, channel: str) -> None:
        while True:
            try:
                message = await self.layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("channel-layer receive failed; retrying", exc_info=True)
                await asyncio.sleep(1.0)
                continue
            event = message.get("event") if isinstance(message, dict) else None
            if not isinstance(event, dict) or not event.get("organization_id"):
                continue
            for consumer in list(self.members.get(org_group(event["organization_id"]), ())):
                consumer.relay_message(message)


_relay = PerLoop(_Relay)


async def join(group: str, consumer: WatchedSocket) -> None:
    await _relay.current().join(group, consumer)


async def leave(group: str, consumer: WatchedSocket) -> None:
    relay = _relay.instance
    if relay is not None and relay.loop is asyncio.get_running_loop():
        await relay.leave(group, consumer)


def local_members(group: str) -> int:
    """Sockets of this process in ``group`` (for tests and diagnostics)."""
    return len(_relay.instance.members.get(group, ())) if _relay.instance is not None else 0


def channel() -> str | None:
    """The process's channel while it is in at least one group (for tests and diagnostics)."""
    return _relay.instance.channel if _relay.instance is not None else None
