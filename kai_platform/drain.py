"""The drain of a process that was asked to stop (SIGTERM: Ctrl-C under ``make run``, ``docker
stop``, Kubernetes): it stops taking new work and gives the work in flight ``KAI_DRAIN_SECONDS``
to finish. Apps register what draining means for them with ``on_drain``; the process's server
(the Celery worker's ``worker_shutting_down`` signal, the web server's shutdown) calls ``begin``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TypeVar

logger = logging.getLogger(__name__)

_began_at: float | None = None
_lock = threading.Lock()
DrainCallback = Callable[[float], object]
_C = TypeVar("_C", bound=DrainCallback)
_callbacks: list[DrainCallback] = []


def drain_seconds() -> float:
    """How long in-flight work may take to finish after SIGTERM (``KAI_DRAIN_SECONDS``, default 30)."""
    try:
        return max(0.0, float(os.environ.get("KAI_DRAIN_SECONDS", "30")))
    except ValueError:
        return 30.0


def on_drain(callback: _C) -> _C:
    """Register ``callback(deadline)`` (``deadline`` on ``time.monotonic()``'s clock), called in a
    thread of its own once the drain begins; it may block until the deadline."""
    if callback not in _callbacks:
        _callbacks.append(callback)
    return callback


def is_draining() -> bool:
    return _began_at is not None


def begin(reason: str = "shutdown") -> bool:
    """Start draining (once; later calls return False): each registered callback runs in a daemon
    thread with the deadline ``drain_seconds()`` from now."""
    global _began_at
    with _lock:
        if _began_at is not None:
            return False
        _began_at = time.monotonic()
    deadline = _began_at + drain_seconds()
    logger.warning("draining (%s): in-flight work has %.0f s to finish", reason, drain_seconds())
    for callback in list(_callbacks):
        threading.Thread(target=_call, args=(callback, deadline), name="kai-drain", daemon=True).start()
    return True


def _call(callback: DrainCallback, deadline: float) -> None:
    try:
        callback(deadline)
    except Exception:
        logger.exception("drain callback %r failed", callback)


def reset() -> None:
    """Forget a drain (tests)."""
    global _began_at
    with _lock:
        _began_at = None
