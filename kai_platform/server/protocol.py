"""daphne's WebSocket protocol, closing with the application's code and reason.

daphne closes through autobahn's ``sendClose``, which accepts only 1000 and 3000-4999 and raises on
anything else; daphne then answers 1011 with no reason, so a refusal meant as 1008 (policy) or 1009
(too big) reached every real client as 1011. Here the close frame is written with autobahn's
``sendCloseFrame`` after the code is checked against RFC 6455 §7.4 (codes an endpoint may send)
and the reason cut to the 123 bytes a close frame holds.
"""

from __future__ import annotations

import logging
from typing import Any

from daphne.ws_protocol import WebSocketProtocol

from kai_platform.asgitypes import Message

logger = logging.getLogger("kai.server")

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_SERVER_ERROR = 1011
#: close codes an endpoint may put on the wire (1004-1006 and 1015 are reserved, never sent)
SENDABLE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})
MAX_REASON_BYTES = 123


def close_payload(code: int | None, reason: str | None) -> tuple[int, bytes | None]:
    """The ``(code, reason as UTF-8)`` to send for an application's close message."""
    code = CLOSE_NORMAL if code is None else code
    if not isinstance(code, int) or not (code in SENDABLE_CODES or 3000 <= code <= 4999):
        logger.error("application closed a socket with invalid close code %r", code)
        return CLOSE_SERVER_ERROR, b"INVALID_CLOSE_CODE"
    if not reason:
        return code, None
    encoded = str(reason).encode("utf-8")[:MAX_REASON_BYTES]
    return code, encoded.decode("utf-8", "ignore").encode("utf-8")  # never a cut character


class KaiWebSocketProtocol(WebSocketProtocol):  # type: ignore[misc]  # daphne ships no types
    def handle_reply(self, message: Message) -> None:
        if message.get("type") == "websocket.close" and self.state != self.STATE_CONNECTING:
            self.serverClose(code=message.get("code"), reason=message.get("reason"))
            return
        super().handle_reply(message)

    def serverClose(self, code: int | None = None, reason: str | None = None) -> None:
        code, reason_utf8 = close_payload(code, reason)
        self.sendCloseFrame(code=code, reasonUtf8=reason_utf8, isReply=False)

    def handle_exception(self, exception: BaseException) -> Any:
        if hasattr(self, "handshake_deferred"):
            return super().handle_exception(exception)
        self.sendCloseFrame(code=CLOSE_SERVER_ERROR, reasonUtf8=b"INTERNAL_ERROR")
