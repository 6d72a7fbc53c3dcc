"""The make-run supervisor on plain child processes: a dead child is restarted with a doubling
backoff, a child that keeps dying is reported as flapping while the others run on, and stop()
ends every process group."""

from __future__ import annotations

import os
import signal
import sys
import time

import psutil

from kai_platform.supervisor import Supervisor, processes, read_state
from tests.helpers import BASE_DIR

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]
CRASHER = [sys.executable, "-c", "raise SystemExit(3)"]


def _until(predicate, timeout: float, supervisor: Supervisor):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        supervisor.poll_once()
        if value := predicate():
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_a_killed_child_is_restarted_with_doubling_backoff_and_the_state_says_so(tmp_path, monkeypatch):
    state = tmp_path / "supervisor.json"
    lines: list[str] = []
    supervisor = Supervisor(cwd=BASE_DIR, state_path=state, log=lines.append, backoff_start=0.3, backoff_max=1.2)
    try:
        supervisor.start("web", SLEEPER)
        supervisor.start("beat", SLEEPER)
        web, beat = supervisor.children
        beat_pid = beat.process.pid
        delays = []
        for _ in range(4):
            pid = web.process.pid
            os.kill(pid, signal.SIGKILL)
            killed = time.monotonic()
            _until(lambda: web.process.pid != pid, 5, supervisor)
            delays.append(time.monotonic() - killed)
        # at once, then 0.3, 0.6, 1.2 s (capped), each measured from the kill
        assert delays[0] < 0.25 and 0.25 <= delays[1] < 0.55 and 0.55 <= delays[2] < 1.0, delays
        assert 1.15 <= delays[3] < 1.8, delays
        assert web.restarts == 4 and beat.restarts == 0 and beat.process.pid == beat_pid
        assert any("web (pid" in line and "exited with -9; restarting" in line for line in lines), lines
        snapshot = read_state(state)
        assert snapshot["children"]["web"]["status"] == "running"
        assert snapshot["children"]["web"]["restarts"] == 4
        assert snapshot["children"]["web"]["last_exit_code"] == -9
        monkeypatch.setenv("KAI_SUPERVISOR_STATE", str(state))
        assert processes()["status"] == "ok"
    finally:
        supervisor.stop(grace=5)
    assert not state.exists()


def test_a_crash_looping_child_is_flapping_and_the_others_keep_running(tmp_path, monkeypatch):
    state = tmp_path / "supervisor.json"
    supervisor = Supervisor(cwd=BASE_DIR, state_path=state, log=lambda line: None, backoff_start=0.05, backoff_max=0.1)
    try:
        supervisor.start("worker", SLEEPER)
        supervisor.start("beat", CRASHER)
        worker = supervisor.children[0]
        _until(lambda: read_state(state)["children"]["beat"]["status"] == "flapping", 20, supervisor)
        monkeypatch.setenv("KAI_SUPERVISOR_STATE", str(state))
        summary = processes()
        assert summary["status"] == "degraded" and summary["flapping"] == ["beat"], summary
        assert summary["children"]["beat"]["deaths_last_minute"] >= 5
        assert summary["children"]["beat"]["last_exit_code"] == 3
        assert worker.process.poll() is None and worker.restarts == 0
    finally:
        supervisor.stop(grace=5)


def test_stop_terms_then_kills_whole_process_groups(tmp_path):
    # a child that ignores SIGTERM and has a grandchild: both are gone after stop()
    stubborn = [
        sys.executable,
        "-c",
        "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); time.sleep(120)",
    ]
    supervisor = Supervisor(cwd=BASE_DIR, log=lambda line: None)
    supervisor.start("stubborn", stubborn)
    child = supervisor.children[0]
    deadline = time.monotonic() + 10
    while not psutil.Process(child.process.pid).children() and time.monotonic() < deadline:
        time.sleep(0.05)
    family = [child.process.pid] + [p.pid for p in psutil.Process(child.process.pid).children()]
    assert len(family) == 2
    started = time.monotonic()
    supervisor.stop(grace=1)
    assert time.monotonic() - started < 4
    time.sleep(0.2)
    alive = [pid for pid in family if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert alive == []
