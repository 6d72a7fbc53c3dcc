"""Per-run limits of CrewAI agents and crews: ``max_rpm`` (model calls per minute, a sliding
window that waits — cancellably — for a free slot) and ``max_execution_time`` (a deadline for one
agent's work on a task, checked before each model call and when the work ends)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from apps.runs.runner import RunFailed

WINDOW_SECONDS = 60.0


class RateLimiter:
    """At most ``per_minute`` acquisitions in any 60 s window; ``acquire`` blocks until one is free.
    ``should_stop`` is polled while waiting (a cancelled run stops waiting at once)."""

    def __init__(
        self,
        per_minute: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.per_minute = int(per_minute)
        self.clock, self.sleep = clock, sleep
        self.calls: deque[float] = deque()
        self.lock = threading.Lock()
        self.waited = 0.0  # seconds spent waiting for a slot, for logs and tests

    def acquire(self, should_stop: Callable[[], None] = lambda: None) -> float:
        """Take a slot; returns the seconds waited for it."""
        waited = 0.0
        while True:
            should_stop()
            with self.lock:
                now = self.clock()
                while self.calls and now - self.calls[0] >= WINDOW_SECONDS:
                    self.calls.popleft()
                if len(self.calls) < self.per_minute:
                    self.calls.append(now)
                    self.waited += waited
                    return waited
                pause = min(1.0, WINDOW_SECONDS - (now - self.calls[0]))
            self.sleep(pause)
            waited += pause


class Deadline:
    """``max_execution_time`` seconds for ``who``'s work on one task (no limit when None)."""

    def __init__(self, seconds: float | None, who: str, *, clock: Callable[[], float] = time.monotonic):
        self.seconds, self.who, self.clock = seconds, who, clock
        self.started = clock()

    def check(self) -> None:
        if self.seconds is not None and self.clock() - self.started > self.seconds:
            raise RunFailed(
                f"{self.who} exceeded its max_execution_time of {self.seconds:g} s", type="max_execution_time"
            )
