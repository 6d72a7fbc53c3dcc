"""Ending a provider call the moment its run is cancelled, even while it waits for the first byte.

A thread blocked reading a socket does not look at its run's cancel flag (a ``threading.Event``,
``params["cancel"]``). ``on_cancel(event, abort)`` hands the flag to one watcher thread per
process, which calls ``abort`` (for an HTTP call: shut its sockets down, which ends the blocked
read at once) as soon as the flag is set. The watcher checks the flags of the calls in flight
every ``INTERVAL`` seconds and sleeps when there are none.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)

#: how often the watcher looks at the flags of the calls in flight (seconds)
INTERVAL = 0.1


class _Watcher:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[int, tuple[threading.Event, Callable[[], None]]] = {}
        self._ids = itertools.count()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, event: threading.Event, abort: Callable[[], None]) -> int:
        with self._lock:
            token = next(self._ids)
            self._calls[token] = (event, abort)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="kai-llm-cancel", daemon=True)
                self._thread.start()
        self._wake.set()
        return token

    def unwatch(self, token: int) -> None:
        with self._lock:
            self._calls.pop(token, None)

    def _loop(self) -> None:
        while True:
            with self._lock:
                calls = list(self._calls.items())
            if not calls:
                self._wake.wait()
                self._wake.clear()
                continue
            for token, (event, abort) in calls:
                if event.is_set():
                    self.unwatch(token)
                    try:
                        abort()
                    except Exception:  # a failed abort leaves the call to end at its next chunk
                        logger.warning("could not end a cancelled provider call", exc_info=True)
            self._wake.wait(INTERVAL)
            self._wake.clear()


_watcher = _Watcher()


@contextmanager
def on_cancel(event: threading.Event | None, abort: Callable[[], None]) -> Iterator[None]:
    """Call ``abort`` (from the watcher thread) if ``event`` is set before the block ends."""
    if event is None:
        yield
        return
    token = _watcher.watch(event, abort)
    try:
        yield
    finally:
        _watcher.unwatch(token)
