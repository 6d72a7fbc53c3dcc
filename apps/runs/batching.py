"""One thread that does for many threads at once what each would do alone: the items handed to
it while it was busy go through one call of its handler (one query, one statement, one
transaction instead of one each); each caller gets its own item's answer. A lone item never
waits for company: when no batch is being handled, none is queued and no other item came in the
last few windows, its caller handles it itself, at once. Items of a burst queue, and the first of
a batch waits (up to ``window``) for more."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

from django.db import connection

logger = logging.getLogger(__name__)


class Batcher:
    """``submit(item)`` blocks until ``handle(items) -> answers`` (one answer per item, in order)
    ran over a batch holding the item; an exception of the handler is raised to every caller of
    that batch (who then does its work alone). ``window``: how long the first queued item of a
    batch waits for more (a burst is under way: the batcher was busy, or another item came less
    than four windows before it)."""

    def __init__(self, name: str, handle: Callable[[list], list], *, window: float = 0.005, max_batch: int = 250):
        self.name, self.handle, self.window, self.max_batch = name, handle, window, max_batch
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._busy = 0  # batches being handled (by the thread, or by a caller alone)
        self._last = float("-inf")  # when the last item came

    def submit(self, item):
        if connection.in_atomic_block:  # the batch could wait for this transaction's locks: done here
            return self.handle([item])[0]
        now = time.monotonic()
        with self._lock:
            # an item that comes within a few windows of the last one is part of a burst: it queues
            burst, self._last = now - self._last < 4 * self.window, now
            alone = not burst and self._busy == 0 and self._queue.empty()
            self._busy += alone
        if alone:  # nothing to share the batch with: handled in this thread, no hand-off and back
            try:
                return self.handle([item])[0]
            finally:
                with self._lock:
                    self._busy -= 1
        connection.close()  # the batch needs a connection of the pool: a caller waiting must hold none
        future: Future = Future()
        self._queue.put((item, future))
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                    self._thread.start()
        return future.result()

    def _next_batch(self) -> list:
        batch = [self._queue.get()]
        deadline = time.monotonic() + self.window
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                batch.append(self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            with self._lock:
                self._busy += 1
            try:
                answers = self.handle([item for item, _ in batch])
            except Exception as exc:
                logger.warning(
                    "%s: a batch of %d failed; its items go one by one", self.name, len(batch), exc_info=True
                )
                for _, future in batch:
                    future.set_exception(exc)
                continue
            finally:
                with self._lock:
                    self._busy -= 1
                try:
                    connection.close()
                except Exception:
                    pass
            for (_, future), answer in zip(batch, answers):
                future.set_result(answer)
