"""The process supervisor of ``make run``: starts web, workers and beat in their own process
groups, restarts a child that dies (with backoff), reports flapping children, and drains them all
on Ctrl-C / SIGTERM.

Its state goes to a small JSON file (``KAI_SUPERVISOR_STATE``, exported to the children) that
``/api/v1/system/health`` and the console read: a dead or flapping child is reported there while
the rest of the platform keeps serving.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kai_platform.drain import drain_seconds

#: a stable child that dies is restarted at once; a death soon after a restart waits ``BACKOFF_START``,
#: each further one twice as long, up to ``BACKOFF_MAX``
BACKOFF_START = 1.0
BACKOFF_MAX = 30.0
#: a child up this long counts as stable again: its next death restarts it at once
STABLE_SECONDS = 30.0
#: this many deaths inside ``FLAP_WINDOW`` seconds and a child is reported as flapping
FLAP_DEATHS = 5
FLAP_WINDOW = 60.0


def read_state(path: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """The supervisor's last written state, or None when no supervisor runs this platform."""
    path = path or os.environ.get("KAI_SUPERVISOR_STATE")
    if not path:
        return None
    try:
        state: dict[str, Any] = json.loads(Path(path).read_text())
        return state
    except (OSError, ValueError):
        return None


@dataclass
class Child:
    name: str
    argv: list[str]
    pass_fds: tuple[int, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff: float = 0.0  # the delay before the next restart
    restart_at: float | None = None
    last_exit: int | None = None
    last_death_at: float | None = None
    deaths: deque[float] = field(default_factory=lambda: deque(maxlen=64))

    def deaths_in_window(self, now: float) -> int:
        return sum(1 for t in self.deaths if now - t <= FLAP_WINDOW)

    def status(self, now: float) -> str:
        if self.deaths_in_window(now) >= FLAP_DEATHS:
            return "flapping"
        if self.restart_at is not None:
            return "restarting"
        return "running" if self.process and self.process.poll() is None else "stopped"


class Supervisor:
    """Runs children, restarts the ones that die, and stops them all (and their children)."""

    def __init__(
        self,
        *,
        cwd: Path,
        state_path: Path | None = None,
        log: Callable[[str], object] = print,
        backoff_start: float = BACKOFF_START,
        backoff_max: float = BACKOFF_MAX,
        stable_seconds: float = STABLE_SECONDS,
    ):
        self.cwd = cwd
        self.backoff_start, self.backoff_max, self.stable_seconds = backoff_start, backoff_max, stable_seconds
        self.children: list[Child] = []
        self.stopping = False
        self.state_path = state_path
        self._log = log
        self._env = os.environ.copy()
        if state_path:
            self._env["KAI_SUPERVISOR_STATE"] = str(state_path)

    # --- starting and restarting ------------------------------------------------------------
    def start(self, name: str, argv: list[str], pass_fds: tuple[int, ...] = ()) -> None:
        """Start ``argv`` as child ``name``; ``pass_fds`` (e.g. a listening socket) are inherited
        by it and by every restart of it."""
        child = Child(name, argv, pass_fds=tuple(pass_fds))
        self.children.append(child)
        self._spawn(child)

    def _spawn(self, child: Child) -> None:
        child.process = subprocess.Popen(
            child.argv, cwd=self.cwd, env=self._env, start_new_session=True, pass_fds=child.pass_fds
        )
        child.started_at = time.monotonic()
        child.restart_at = None
        self._log(f"started {child.name} (pid {child.process.pid})")
        self.write_state()

    def _on_death(self, child: Child, code: int, now: float) -> None:
        self._signal(child.process, signal.SIGKILL)  # its group's stragglers (pool children) go too
        if now - child.started_at >= self.stable_seconds:
            child.backoff = 0.0
        child.deaths.append(now)
        child.last_exit, child.last_death_at = code, time.time()
        child.restart_at = now + child.backoff
        flapping = child.deaths_in_window(now) >= FLAP_DEATHS
        pid = child.process.pid if child.process is not None else "-"
        self._log(
            f"{child.name} (pid {pid}) exited with {code}; restarting in {child.backoff:.0f}s"
            + (f" — FLAPPING: {child.deaths_in_window(now)} deaths in the last minute" if flapping else "")
        )
        child.backoff = min(self.backoff_max, max(self.backoff_start, child.backoff * 2))
        self.write_state()

    def poll_once(self) -> None:
        """One pass: note children that died, restart those whose backoff ran out."""
        now = time.monotonic()
        for child in self.children:
            if self.stopping:
                return
            if child.restart_at is None:
                code = child.process.poll() if child.process is not None else None
                if code is not None:
                    self._on_death(child, code, now)
            elif now >= child.restart_at:
                child.restarts += 1
                self._spawn(child)

    def wait(self) -> int:
        """Supervise until ``stopping`` is set (by the signal handler)."""
        while not self.stopping:
            self.poll_once()
            time.sleep(0.2)
        return 0

    # --- state for the health view ----------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "supervisor_pid": os.getpid(),
            "updated_at": time.time(),
            "stopping": self.stopping,
            "children": {
                c.name: {
                    "status": c.status(now),
                    "pid": c.process.pid if c.process else None,
                    "restarts": c.restarts,
                    "deaths_last_minute": c.deaths_in_window(now),
                    "last_exit_code": c.last_exit,
                    "last_death_at": c.last_death_at,
                    "next_backoff_s": c.backoff,
                    "uptime_s": round(now - c.started_at, 1) if c.restart_at is None else 0.0,
                }
                for c in self.children
            },
        }

    def write_state(self) -> None:
        if not self.state_path:
            return
        tmp = self.state_path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(self.snapshot()))
            os.replace(tmp, self.state_path)
        except OSError as exc:
            self._log(f"could not write the supervisor state to {self.state_path}: {exc}")

    # --- stopping ---------------------------------------------------------------------------
    def stop(self, grace: float | None = None) -> None:
        """SIGTERM every child (web stops accepting, workers stop claiming and drain), wait for
        them up to ``grace`` (the drain plus a margin), then SIGKILL what is left."""
        self.stopping = True
        grace = drain_seconds() + 10.0 if grace is None else grace
        live = [c for c in self.children if c.process and c.restart_at is None and c.process.poll() is None]
        for child in live:
            self._signal(child.process, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in self.children:
            if child.process is None:
                continue
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._log(f"{child.name} did not stop in {grace:.0f}s; killing it")
                self._signal(child.process, signal.SIGKILL)
                child.process.wait()
            self._signal(child.process, signal.SIGKILL)
        self.write_state()
        if self.state_path:
            self.state_path.unlink(missing_ok=True)
        self._log("all processes stopped")

    @staticmethod
    def _signal(process: subprocess.Popen[bytes] | None, sig: int) -> None:
        if process is None:
            return
        try:
            os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def processes() -> dict[str, Any] | None:
    """The supervised children as health answers show them (None: not run by a supervisor), with
    ``status`` ``ok`` or ``degraded`` (a child restarting or flapping) and which ones are flapping."""
    state = read_state()
    if not state:
        return None
    children = state.get("children", {})
    flapping = sorted(name for name, c in children.items() if c.get("status") == "flapping")
    restarting = sorted(name for name, c in children.items() if c.get("status") == "restarting")
    return {
        "status": "degraded" if flapping or restarting else "ok",
        "flapping": flapping,
        "restarting": restarting,
        "children": children,
        "updated_at": state.get("updated_at"),
    }
