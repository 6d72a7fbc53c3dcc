"""Test helpers shared across the suite."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def assert_envelope(response, status: int, code: str | None = None):
    """The one error shape (DESIGN §6)."""
    assert response.status_code == status, (response.status_code, getattr(response, "content", b"")[:500])
    body = response.json()
    assert set(body) >= {"detail", "type", "code", "errors", "request_id"}, body
    assert isinstance(body["detail"], str) and body["detail"]
    assert isinstance(body["errors"], list)
    assert body["request_id"] == response["X-Request-ID"]
    if code:
        assert body["code"] == code, body
    return body


def subprocess_env(**extra) -> dict:
    """Environment for a child process that must see this test's database and Redis keys."""
    from django.conf import settings
    from django.db import connection

    env = os.environ.copy()
    env.update(
        DJANGO_ENV="test",
        KAI_DB_NAME=connection.settings_dict["NAME"],
        KAI_REDIS_PREFIX=settings.KAI_REDIS_PREFIX,
        PYTHONPATH=str(BASE_DIR),
    )
    env.pop("PYTEST_XDIST_WORKER", None)  # the prefix above already carries the worker suffix
    env.pop("KAI_PROCESS", None)  # set once this process imported kai_platform.asgi; children decide their own
    env.update({k: str(v) for k, v in extra.items()})
    return env


class WorkerProcess:
    def __init__(self, *extra_args: str, env: dict | None = None):
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "kai_platform",
                "worker",
                "--loglevel",
                "WARNING",
                "--without-mingle",
                "--without-gossip",
                "--pool",
                "threads",
                "--concurrency",
                "4",
                *extra_args,
            ],
            cwd=BASE_DIR,
            env=env or subprocess_env(),
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait_alive(self, timeout: float = 120.0) -> None:
        """Until the worker announced itself (a loaded machine imports Django and Celery slowly)."""
        from django.conf import settings
        from django_redis import get_redis_connection

        deadline = time.monotonic() + timeout
        # its own key (the pid ends it): another worker's, e.g. one a test killed, lingers until it expires
        pattern = f"{settings.KAI_REDIS_PREFIX}:workers:*:{self.process.pid}"
        while time.monotonic() < deadline:
            if any(True for _ in get_redis_connection("default").scan_iter(pattern, count=1000)):
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}")
            time.sleep(0.1)
        raise TimeoutError("worker did not announce itself")

    def stop(self, sig=signal.SIGTERM) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            return
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


class SharedWorker:
    """One real Celery worker (threads pool, default + runs queues) for every test of an xdist
    worker that asks for one: starting a worker costs seconds of imports, stopping it a warm
    shutdown. Between those tests it is paused so tests without a worker see none: it stops
    consuming both queues (control ``cancel_consumer``, acknowledged), its heartbeat key goes and
    the process is frozen (SIGSTOP), so nothing it does overlaps another test's flush."""

    def __init__(self, concurrency: int = 8):
        from django.conf import settings

        self.name = f"shared-{settings.KAI_REDIS_PREFIX}@%h"
        self.queues = (settings.CELERY_TASK_DEFAULT_QUEUE, settings.KAI_RUNS_QUEUE)
        self.worker = WorkerProcess("--concurrency", str(concurrency), "-n", self.name)
        try:
            self.worker.wait_alive()
            self.node = self._node_name()
            self.heartbeat = self._heartbeat()
        except BaseException:  # not left running beside the next test's attempt
            self.worker.stop(signal.SIGKILL)
            raise
        self.paused = False

    @property
    def process(self):
        return self.worker.process

    def _node_name(self) -> str:
        import socket

        return self.name.replace("%h", socket.gethostname())

    def _heartbeat(self) -> tuple[str, str]:
        from django.conf import settings
        from django_redis import get_redis_connection

        redis = get_redis_connection("default")
        key = next(iter(redis.scan_iter(f"{settings.KAI_REDIS_PREFIX}:workers:*:{self.process.pid}", count=1000)))
        return key, redis.get(key)

    def alive(self) -> bool:
        return self.process.poll() is None

    def _control(self, command: str, queue: str) -> None:
        from kai_platform.celery import app

        replies = app.control.broadcast(
            command, arguments={"queue": queue}, destination=[self.node], reply=True, limit=1, timeout=30
        )
        if not replies:
            raise TimeoutError(f"worker {self.node} did not answer {command}")

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Until the worker holds no task (running or reserved) — twice in a row, a task that ends
        may queue another."""
        from kai_platform.celery import app

        inspect = app.control.inspect(destination=[self.node], limit=1, timeout=10)
        deadline, quiet = time.monotonic() + timeout, 0
        while time.monotonic() < deadline and quiet < 2:
            active, reserved = inspect.active() or {}, inspect.reserved() or {}
            busy = any(active.values()) or any(reserved.values()) or not active
            quiet = 0 if busy else quiet + 1
            if busy:
                time.sleep(0.05)
        if quiet < 2:
            raise TimeoutError(f"worker {self.node} still busy after {timeout} s")

    def pause(self) -> None:
        from django_redis import get_redis_connection

        self.wait_idle()
        for queue in self.queues:
            self._control("cancel_consumer", queue)
        os.kill(self.process.pid, signal.SIGSTOP)
        get_redis_connection("default").delete(self.heartbeat[0])
        self.paused = True

    def resume(self) -> None:
        from django.conf import settings
        from django_redis import get_redis_connection

        if not self.paused:
            return
        # announced again at once (the worker's own loop refreshes it within its interval)
        get_redis_connection("default").set(*self.heartbeat, ex=settings.KAI_WORKER_HEARTBEAT_SECONDS * 3)
        os.kill(self.process.pid, signal.SIGCONT)
        for queue in self.queues:
            self._control("add_consumer", queue)
        self.paused = False

    def stop(self) -> None:
        if self.paused:
            os.killpg(self.process.pid, signal.SIGCONT)
        self.worker.stop()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """A real daphne process on this test's database and Redis prefix (``prefix_suffix`` gives
    it a channel-layer namespace of its own, i.e. a layer that never hears this process)."""

    def __init__(self, prefix_suffix: str = "", **env):
        from django.conf import settings

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        # no shutdown drain unless a test asks (kai_platform/server/drain.py): stop() stays quick
        extra = {"KAI_REDIS_PREFIX": settings.KAI_REDIS_PREFIX + prefix_suffix, "KAI_WS_DRAIN_SECONDS": "0", **env}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kai_platform.server",
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                "kai_platform.asgi:application",
            ],
            cwd=BASE_DIR,
            env=subprocess_env(**extra),
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait()

    def _wait(self, timeout: float = 30.0) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daphne exited with {self.process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError("daphne did not answer /health")

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def parse_source(text: str, name: str):
    """``ast.parse``, tried again when CPython 3.11.7 reports "AST constructor recursion depth
    mismatch" for valid source: the converter's depth counter is shared by the interpreter, and a
    conversion elsewhere in the process (3.11 parses a line to place a traceback's carets; an error
    path skipped the decrement, python/cpython gh-106905) leaves it off. A retry converts cleanly."""
    import ast

    for attempt in range(5):
        try:
            return ast.parse(text, name)
        except SystemError as exc:
            if "recursion depth mismatch" not in str(exc) or attempt == 4:
                raise
    raise AssertionError("unreachable")
