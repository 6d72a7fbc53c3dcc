"""Two "hosts" (two ``make run`` process groups on two ports) against one PostgreSQL and one Redis:
runs spread over both; SIGKILL of every process of one host mid-load → the survivor's reaper
requeues that host's runs and the survivor completes them. None lost; how many had to start
again from the beginning is printed (resuming mid-run needs the run engine's checkpoints)."""
from __future__ import annotations

import os
import signal
import time

import psycopg
import pytest

from tests.launcher import KaiUp, call, database_connect_kwargs, drop_database

pytestmark = pytest.mark.slow
FAST_REAPER = {"KAI_RUN_STALE_SECONDS": "6", "KAI_REAPER_SECONDS": "2", "KAI_RUN_HEARTBEAT_SECONDS": "1"}


def _kill_host(up: KaiUp) -> None:
    """Every process of the host, as a machine dying would: the children's groups, then make run."""
    for child in up.state()["children"].values():
        try:
            os.killpg(child["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass
    up.process.kill()
    up.process.wait(10)


def test_one_of_two_hosts_dies_and_the_other_finishes_its_runs(tmp_path):
    first = KaiUp(tmp_path / "a", **FAST_REAPER)
    second = None
    try:
        first.start()
        second = KaiUp(tmp_path / "b", db_name=first.db_name, prefix=first.prefix, **FAST_REAPER).start()
        token = first.owner_token()
        status, agent = call("POST", f"{first.base}/api/v1/agents", {"name": "Spread"}, token)
        assert status == 201, agent
        with psycopg.connect(**database_connect_kwargs(first.db_name)) as conn:  # no per-plan cap in the way
            conn.execute("UPDATE accounts_organization SET plan = 'enterprise' WHERE slug = 'acme'")
        runs = []
        for i in range(12):
            base = (first, second)[i % 2].base  # the API of both hosts
            status, body = call("POST", f"{base}/api/v1/executions",
                                {"agent_id": agent["id"], "description": "word " * 60, "max_attempts": 3,
                                 "params": {"tokens_per_s": 10}}, token)
            assert status == 202, body
            runs.append(body["execution_id"])
        doomed_pid = first.child_pid("runs-worker")
        with psycopg.connect(**database_connect_kwargs(first.db_name)) as conn:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                workers = [w for (w,) in conn.execute("SELECT worker FROM crews_execution WHERE status = 'RUNNING' "
                                                      "AND id = ANY(%s::uuid[])", [runs]).fetchall()]
                if any(f"pid {doomed_pid}" in w for w in workers) and len(workers) >= 4:
                    break
                time.sleep(0.3)
            held = sum(f"pid {doomed_pid}" in w for w in workers)
            assert held and held < len(workers), workers  # spread over both hosts

            _kill_host(first)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                rows = conn.execute("SELECT status, attempts FROM crews_execution WHERE id = ANY(%s::uuid[])",
                                    [runs]).fetchall()
                if all(status in ("COMPLETED", "FAILED", "CANCELLED") for status, _ in rows):
                    break
                time.sleep(1)
        statuses = [status for status, _ in rows]
        restarted = sum(attempts > 1 for _, attempts in rows)
        print(f"\ntwo hosts: {len(runs)} runs, {held} on the killed host; lost {len(runs) - statuses.count('COMPLETED')}, "
              f"started again from the beginning {restarted}")
        assert statuses == ["COMPLETED"] * len(runs), list(zip(runs, rows))
        assert restarted == held, rows  # each lost run ran again exactly once more, on the survivor
    finally:
        if second is not None:
            second.stop()
        first.stop()
        drop_database(first.db_name)
