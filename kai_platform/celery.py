"""The Celery application. Workers announce themselves in Redis (``worker_heartbeat``) so the
readiness check can tell whether at least one worker is alive without a broadcast round-trip."""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
from typing import Any

from celery import Celery
from celery.signals import (
    beat_init,
    worker_init,
    worker_process_init,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kai_platform.settings")

app = Celery("kai_platform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

_stop = threading.Event()


def worker_key_pattern() -> str:
    # deferred: start-up — every process (the CLI too) loads this module
    from django.conf import settings

    return f"{settings.KAI_REDIS_PREFIX}:workers:*"


def _heartbeat_loop(hostname: str, role: str = "workers") -> None:
    # deferred: start-up — every process (the CLI too) loads this module
    from django.conf import settings
    from django_redis import get_redis_connection

    interval = settings.KAI_WORKER_HEARTBEAT_SECONDS
    key = f"{settings.KAI_REDIS_PREFIX}:{role}:{hostname}"
    while not _stop.is_set():
        try:
            get_redis_connection("default").set(key, os.getpid(), ex=interval * 3)
        except Exception:  # Redis down: the readiness check reports it; keep trying.
            pass
        _stop.wait(interval)
    try:
        get_redis_connection("default").delete(key)
    except Exception:
        pass


@worker_ready.connect  # type: ignore[untyped-decorator]  # celery ships no types
def _start_heartbeat(sender: object = None, **kwargs: Any) -> None:
    # Several workers may share a node name (celery@host); the pid keeps their keys apart, so one
    # worker stopping never deletes another's heartbeat.
    hostname = f"{getattr(sender, 'hostname', None) or 'worker@' + socket.gethostname()}:{os.getpid()}"
    threading.Thread(target=_heartbeat_loop, args=(hostname,), name="kai-worker-heartbeat", daemon=True).start()


@worker_shutdown.connect  # type: ignore[untyped-decorator]  # celery ships no types
def _stop_heartbeat(**kwargs: Any) -> None:
    _stop.set()


@worker_shutting_down.connect  # type: ignore[untyped-decorator]  # celery ships no types
def _begin_drain(sig: object = None, how: str | None = None, **kwargs: Any) -> None:
    """Warm shutdown (SIGTERM): the worker stops consuming; the runs it holds get the drain time
    to finish (``kai_platform.drain``). A cold shutdown (a second signal) skips it."""
    if how == "Warm":
        # deferred: start-up — every process (the CLI too) loads this module
        from kai_platform import drain

        drain.begin(f"worker {sig or 'shutdown'}")


@worker_init.connect  # type: ignore[untyped-decorator]  # celery ships no types
def _runs_worker_task_logs(**kwargs: Any) -> None:
    """The runs worker logs no line per task received or succeeded (Celery's INFO lines): at
    thousands of runs a second apart they took the consumer's thread a write and a handler lock
    per message. Its failures still log (WARNING and up), and a run's own log is in its record."""
    if os.environ.get("KAI_PROCESS") == "runs-worker":
        for name in ("celery.worker.strategy", "celery.app.trace"):
            logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger(name).getEffectiveLevel()))


@worker_init.connect  # type: ignore[untyped-decorator]  # celery ships no types
def _runs_worker_switch_interval(**kwargs: Any) -> None:
    """The runs worker (KAI_PROCESS=runs-worker): thousands of threads share one GIL, and the
    consumer thread that takes the messages waits a switch interval for it after each read;
    a shorter interval (``KAI_RUNS_SWITCH_INTERVAL`` seconds) lets it take them that much faster
    (docs/runs.md, in flight)."""
    if os.environ.get("KAI_PROCESS") == "runs-worker":
        sys.setswitchinterval(float(os.environ.get("KAI_RUNS_SWITCH_INTERVAL") or 0.0005))


@worker_init.connect  # type: ignore[untyped-decorator]  # celery ships no types
@worker_process_init.connect  # type: ignore[untyped-decorator]  # celery ships no types
def _start_tracing(**kwargs: Any) -> None:
    """OpenTelemetry in the worker (and each prefork child), when configured (kai_platform.telemetry)."""
    # deferred: start-up — every process (the CLI too) loads this module
    from kai_platform import telemetry

    telemetry.setup("kai-worker")


@beat_init.connect  # type: ignore[untyped-decorator]  # celery ships no types
def _start_beat_tracing(**kwargs: Any) -> None:
    # deferred: start-up — every process (the CLI too) loads this module
    from kai_platform import telemetry

    telemetry.setup("kai-beat")


@beat_init.connect  # type: ignore[untyped-decorator]  # celery ships no types
def _start_beat_heartbeat(**kwargs: Any) -> None:
    """``<prefix>:beat:<host>:<pid>`` while the beat lives: the compose footprint's healthcheck of it."""
    hostname = f"{socket.gethostname()}:{os.getpid()}"
    threading.Thread(target=_heartbeat_loop, args=(hostname, "beat"), name="kai-beat-heartbeat", daemon=True).start()
