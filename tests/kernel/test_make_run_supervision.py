"""``make run`` stays up: SIGKILL of each child in turn (what the OOM killer does) while runs are
being created and streamed — the supervisor restarts it, ``/health`` answers every request (the
web back within 5 s), the readiness answer names the restarts, and every run ends."""

from __future__ import annotations

import os
import signal
import threading
import time
import urllib.error

import pytest
import redis

from tests.launcher import KaiUp, call, drop_database

pytestmark = pytest.mark.slow

ACTIVE = {"PENDING", "PREPARING", "RUNNING"}


class HealthProbe(threading.Thread):
    """GET /health every 100 ms; keeps when it failed. A request the killed web had already
    accepted dies with it (its connection is reset, no process can answer it): as a load balancer
    does with an idempotent GET, the probe retries a connection failure once, at once; a wrong
    status, or a second failure, counts."""

    def __init__(self, base: str):
        super().__init__(daemon=True)
        self.base, self.stop_event, self.failures, self.checks = base, threading.Event(), [], 0

    def run(self):
        while not self.stop_event.is_set():
            at = time.monotonic()
            status = self._get()
            if status is None:
                status = self._get()
            self.checks += 1
            if status != 200:
                self.failures.append(at)
            self.stop_event.wait(0.1)

    def _get(self) -> int | None:
        """The status; None when the connection was reset or closed unanswered (worth a retry);
        0 for any other failure (a timeout, a refused connection)."""
        try:
            return call("GET", f"{self.base}/health", timeout=10)[0]
        except ConnectionResetError:  # http.client.RemoteDisconnected is one
            return None
        except urllib.error.URLError as error:
            return None if isinstance(error.reason, ConnectionResetError) else 0
        except Exception:
            return 0


def _restarted(up: KaiUp, name: str, old_pid: int, timeout: float = 40) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        child = up.state()["children"][name]
        if child["pid"] != old_pid and child["status"] == "running":
            return child["pid"]
        time.sleep(0.05)
    raise AssertionError(f"{name} was not restarted:\n{up.tail()}")


def _ready(up: KaiUp, name: str, pid: int, timeout: float = 60) -> None:
    """web: /health answers; a worker: its heartbeat key (named with its pid) exists; beat: alive."""
    deadline = time.monotonic() + timeout
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    while time.monotonic() < deadline:
        if name == "web":
            try:
                if call("GET", f"{up.base}/health", timeout=1)[0] == 200:
                    return
            except Exception:
                pass
        elif name == "beat":
            os.kill(pid, 0)
            return
        elif any(True for _ in client.scan_iter(f"{up.prefix}:workers:*:{pid}", count=1000)):
            return
        time.sleep(0.05)
    raise AssertionError(f"{name} (pid {pid}) did not get ready:\n{up.tail()}")


def test_sigkill_of_each_child_is_survived(tmp_path):
    up = KaiUp(tmp_path / "var", KAI_RUN_STALE_SECONDS="6", KAI_REAPER_SECONDS="2", KAI_RUN_HEARTBEAT_SECONDS="1")
    probe = HealthProbe(up.base)
    runs: list[str] = []
    try:
        up.start()
        token = up.owner_token()
        status, agent = call("POST", f"{up.base}/api/v1/agents", {"name": "Steady"}, token)
        assert status == 201, agent

        def start_run():
            status, body = call(
                "POST",
                f"{up.base}/api/v1/executions",
                {
                    "agent_id": agent["id"],
                    "description": "word " * 30,
                    "max_attempts": 3,
                    "params": {"tokens_per_s": 15},
                },
                token,
            )
            if status == 202:
                runs.append(body["execution_id"])
            return status

        probe.start()
        restart_seconds = {}
        for name in ("web", "worker", "runs-worker", "beat"):
            for _ in range(3):
                start_run()  # load: the web killed below may refuse one; the rest must be accepted
            time.sleep(1.0)
            old = up.child_pid(name)
            os.kill(old, signal.SIGKILL)
            killed = time.monotonic()
            new = _restarted(up, name, old)
            _ready(up, name, new)
            restart_seconds[name] = round(time.monotonic() - killed, 2)
        print(f"\nrestart time after SIGKILL (to ready): {restart_seconds}")
        # /health answered throughout: while the web restarts, connections wait in the listening
        # socket's backlog (the supervisor holds the socket) instead of being refused
        probe.stop_event.set()
        probe.join(15)
        assert probe.failures == [] and probe.checks > 50, (probe.failures, probe.checks)
        assert restart_seconds["web"] < 5, restart_seconds
        # the whole log: the probe's access-log lines push the first kill's line out of any tail
        assert any("web (pid" in line and "exited with -9; restarting in 0s" in line for line in up.output), up.tail()

        status, health = call("GET", f"{up.base}/api/v1/system/health", token=token)
        assert status in (200, 503), health
        children = (health.get("processes") or {}).get("children", {})
        assert {name: c["restarts"] for name, c in children.items()} == {
            "web": 1,
            "worker": 1,
            "runs-worker": 1,
            "beat": 1,
        }, health
        assert all(c["status"] == "running" for c in children.values()), children

        # no run stuck: the runs the killed runs worker held are reaped and requeued, all end
        assert len(runs) >= 10, runs
        deadline = time.monotonic() + 90
        while True:
            statuses = {
                rid: call("GET", f"{up.base}/api/v1/executions/{rid}", token=token)[1]["status"] for rid in runs
            }
            if not ACTIVE & set(statuses.values()) or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert not ACTIVE & set(statuses.values()), statuses
        assert set(statuses.values()) == {"COMPLETED"}, statuses
        assert up.stop() == 0, up.tail()
    finally:
        probe.stop_event.set()
        up.stop()
        drop_database(up.db_name)
