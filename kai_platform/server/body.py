"""HTTP request bodies handed to the application as it reads them, not all at once.

Twisted spools a request body to a temporary file (over 100 kB) before daphne sees it; daphne then
reads the whole file into its unbounded application queue in 8 KiB messages (django/daphne#483), so
a 50 MB upload cost the web process ~50 MB of memory whatever the application did. Here the
application's ``receive()`` reads the next chunk from that file when it asks for one: memory stays
one chunk per request. Other messages (``http.disconnect``) still come through daphne's queue.
"""

from __future__ import annotations

import asyncio
import io
from typing import IO, TYPE_CHECKING

from kai_platform.asgitypes import Message

if TYPE_CHECKING:
    from daphne.http_protocol import WebRequest

#: bytes per ``http.request`` message (Django's multipart parser reads 64 KiB at a time)
CHUNK_BYTES = 64 * 1024


class StreamedBody:
    """``receive`` for one HTTP request: the spooled body chunk by chunk, then daphne's queue."""

    def __init__(self, queue: asyncio.Queue[Message], body: IO[bytes]) -> None:
        self.body: IO[bytes] | None
        self.queue, self.body = queue, body

    def _next_chunk(self) -> Message:
        assert self.body is not None  # called only while the body is being read
        try:
            chunk = self.body.read(CHUNK_BYTES)
        except ValueError:  # the connection was lost and Twisted closed the spool file
            chunk = b""
        more = len(chunk) == CHUNK_BYTES
        if not more:
            self.close()
        return {"type": "http.request", "body": chunk, "more_body": more}

    async def receive(self) -> Message:
        while self.body is not None:
            try:
                message = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                return self._next_chunk()
            if message["type"] != "http.request":  # a disconnect while the body is being read
                self.close()
                return message
        while True:
            message = await self.queue.get()
            if message["type"] != "http.request":  # daphne's own (empty) body message is skipped
                return message

    def close(self) -> None:
        if self.body is not None:
            self.body.close()
            self.body = None


def take_body(protocol: WebRequest) -> StreamedBody | None:
    """Take the spooled body of a daphne ``WebRequest``; daphne itself then queues one empty message."""
    body = getattr(protocol, "content", None)
    if body is None or getattr(body, "closed", True):
        return None
    body.seek(0)
    protocol.content = io.BytesIO()
    return StreamedBody(asyncio.Queue(), body)
