"""What the process-wide socket machinery (the relay, the credential watcher, the connection leases)
needs of a socket: ``KaiSocketConsumer`` and the socket.io sessions (apps.events.sio) both are one."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from kai_platform.asgitypes import Message

if TYPE_CHECKING:
    from kai_platform.realtime.consumers import SocketIdentity


class WatchedSocket(Protocol):
    ip: str
    client_id: str
    _closing: bool
    _limits_held: bool

    @property
    def authenticated_identity(self) -> SocketIdentity: ...

    def relay_message(self, message: Message) -> None: ...

    def credential_lapsed(self) -> None: ...

    def credential_expiring(self, expires_at: datetime) -> None: ...

    async def warn_disconnect(self, reason: str, seconds: float) -> None: ...
