"""SIGTERM to ``make run`` drains: the web stops accepting, the runs worker stops claiming, runs
that finish within ``KAI_DRAIN_SECONDS`` complete, the others go back to PENDING (requeued, with
their checkpoint) — none FAILED — and the next start runs them to the end."""

from __future__ import annotations

import time

import psycopg
import pytest

from tests.launcher import KaiUp, call, database_connect_kwargs, drop_database

pytestmark = pytest.mark.slow


def _statuses(up: KaiUp, token: str, ids) -> dict:
    return {rid: call("GET", f"{up.base}/api/v1/executions/{rid}", token=token)[1]["status"] for rid in ids}


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_sigterm_drains_runs_and_none_fails(tmp_path):
    up = KaiUp(tmp_path / "var", KAI_DRAIN_SECONDS="4")
    second = None
    try:
        up.start()
        token = up.owner_token()
        status, agent = call("POST", f"{up.base}/api/v1/agents", {"name": "Drained"}, token)
        assert status == 201, agent

        def start(words: int) -> str:
            status, body = call(
                "POST",
                f"{up.base}/api/v1/executions",
                {"agent_id": agent["id"], "description": "word " * words, "params": {"tokens_per_s": 10}},
                token,
            )
            assert status == 202, body
            return body["execution_id"]

        short = [start(12), start(12)]  # ~2 s: finish inside the drain
        long = [start(120), start(120)]  # ~12 s: cannot
        _wait(lambda: set(_statuses(up, token, short + long).values()) == {"RUNNING"}, 30, "all four running")

        stopped_at = time.monotonic()
        code = up.stop(timeout=40)
        stop_seconds = time.monotonic() - stopped_at
        assert code == 0, up.tail()
        assert 3.5 <= stop_seconds < 4 + 12, stop_seconds  # waited for the drain, not for the long runs
        with pytest.raises(OSError):
            call("GET", f"{up.base}/health", timeout=2)  # the web no longer accepts
        assert "drain time over: 2 run(s) go back to the queue" in up.tail(400), up.tail(400)

        # the same database and Redis again: what drained is there as it was left, then runs to the end
        second = KaiUp(up.var_dir, db_name=up.db_name, prefix=up.prefix, KAI_DRAIN_SECONDS="4").start()
        second_token = call(
            "POST", f"{second.base}/api/v1/auth/login", {"email": "ann@example.com", "password": "correct-horse-9"}
        )[1]["access_token"]
        first_look = _statuses(second, second_token, short + long)
        assert [first_look[r] for r in short] == ["COMPLETED", "COMPLETED"], first_look
        assert all(first_look[r] in ("PENDING", "PREPARING", "RUNNING") for r in long), first_look
        with psycopg.connect(**database_connect_kwargs(up.db_name)) as conn:
            for rid in long:
                moves = conn.execute(
                    "SELECT from_status, to_status, reason FROM crews_executionevent "
                    "WHERE execution_id = %s ORDER BY id",
                    [rid],
                ).fetchall()
                assert ("RUNNING", "PENDING") in [(a, b) for a, b, _ in moves], moves
                assert any("requeued" in reason for *_, reason in moves), moves
                assert "FAILED" not in [b for _, b, _ in moves], moves
        finished = _wait(
            lambda: (
                (s := _statuses(second, second_token, long))
                and not {"PENDING", "PREPARING", "RUNNING"} & set(s.values())
                and s
            ),
            90,
            "the requeued runs",
        )
        assert set(finished.values()) == {"COMPLETED"}, finished
        print(
            f"\nSIGTERM under load: {len(short + long)} runs, {len(short)} finished inside the "
            f"{stop_seconds:.1f} s drain, {len(long)} requeued and completed after the restart; lost 0, failed 0"
        )
    finally:
        if second is not None:
            second.stop()
        up.stop()
        drop_database(up.db_name)
