"""Two "hosts" (two ``make run`` process groups on two ports) against one PostgreSQL and one Redis:
crew runs (three model calls each, checkpointed) spread over both; SIGKILL of every process of one
host mid-load → the survivor's reaper requeues that host's runs and the survivor resumes them from
their step logs. None lost, none run twice: every run COMPLETED once, and the provider — a server in
this test that counts the calls it answered in full, per run — completed each call the dead host had
logged exactly once. A socket on the dead host reconnects to the survivor with ``last_event_id`` and
catches up: every run's completion arrives once over the two sockets, nothing twice."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time

import psycopg
import pytest

from tests.agents.llm_server import DigestLLMServer
from tests.crews.conftest import AGENTS_YAML, TASKS_YAML
from tests.launcher import KaiUp, call, database_connect_kwargs, drop_database

# two make runs start one after the other: on a loaded shared machine each takes minutes to get ready
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
FAST_REAPER = {"KAI_RUN_STALE_SECONDS": "6", "KAI_REAPER_SECONDS": "2", "KAI_RUN_HEARTBEAT_SECONDS": "1"}
TASKS = 3
RUNS = 10
WORD_SECONDS = 0.4  # six words a call: ~2.4 s, so a kill lands mid-run
START_SECONDS = 240  # two make runs on a loaded shared machine (readiness only; nothing timed depends on it)
EVENTS = ["execution.running", "execution.completed", "execution.failed"]
# every task names its run's topic, so the provider can count each run's calls
CREW_TASKS_YAML = TASKS_YAML.replace("Analyse the findings", "Analyse the findings on {topic}").replace(
    "Write the report", "Write the report on {topic}"
)


class CountingProvider(DigestLLMServer):
    """Answers ``finding-<request digest>`` words; ``completed`` lists ``(run topic, request digest)``
    of every answer delivered in full (not one cut off by a dead peer)."""

    def __init__(self):
        self.completed: list[tuple[str, str]] = []
        super().__init__(word_seconds=WORD_SECONDS)

    def on_answered(self, body: dict, digest: str) -> None:
        topic = (re.search(r"tides-\d+", json.dumps(body["messages"], sort_keys=True)) or [""])[0]
        self.completed.append((topic, digest))


class SocketWatcher(threading.Thread):
    """A hub socket subscribed to the runs' status events, as a client keeps one open."""

    def __init__(self, base: str, token: str, last_event_id: int | None = None):
        super().__init__(daemon=True)
        self.url = base.replace("http://", "ws://") + f"/api/v1/ws?token={token}"
        if last_event_id is not None:
            self.url += f"&last_event_id={last_event_id}"
        self.events: list[tuple[int, str, str]] = []  # (seq, type, execution id)
        self.subscribed, self.closed, self.stop = threading.Event(), threading.Event(), threading.Event()

    def run(self):
        from websockets.sync.client import connect

        try:
            with connect(self.url, open_timeout=15) as socket:
                socket.send(json.dumps({"type": "subscribe", "data": {"events": EVENTS}}))
                while not self.stop.is_set():
                    try:
                        message = json.loads(socket.recv(timeout=0.5))
                    except TimeoutError:
                        continue
                    if message["type"] == "subscription_confirmed":
                        self.subscribed.set()
                    elif message["type"] in EVENTS:
                        self.events.append((message["seq"], message["type"], message["data"]["execution_id"]))
        except Exception:  # noqa: BLE001 - the host died under it: what it saw stays
            pass
        finally:
            self.closed.set()

    @property
    def last_seq(self) -> int:
        return max(seq for seq, *_ in self.events)


def _kill_host(up: KaiUp) -> None:
    """Every process of the host, as a machine dying would: the children's groups, then make run."""
    for child in up.state()["children"].values():
        try:
            os.killpg(child["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass
    up.process.kill()
    up.process.wait(10)


def _prepare(first: KaiUp, provider: CountingProvider) -> str:
    token = first.owner_token()
    with psycopg.connect(**database_connect_kwargs(first.db_name)) as conn:  # no per-plan cap in the way
        conn.execute(
            "UPDATE accounts_organization SET plan = 'enterprise', settings = settings || "
            "'{\"network_allowlist\": [\"127.0.0.1\"]}'::jsonb WHERE slug = 'acme'"
        )
    status, body = call(
        "POST",
        f"{first.base}/api/v1/providers",
        {
            "name": "local",
            "provider": "openai",
            "base_url": f"{provider.url}/v1",
            "api_key": "sk-local-1234",
            "default_model": "gpt-4o-mini",
        },
        token,
    )
    assert status == 201, body
    return token


def _start_runs(hosts, token) -> dict[str, str]:
    """``RUNS`` crew runs posted to the two hosts' APIs in turn: execution id → its topic."""
    runs = {}
    for i in range(RUNS):
        topic = f"tides-{i}"
        status, body = call(
            "POST",
            f"{hosts[i % 2].base}/api/v1/executions",
            {
                "agents_yaml": AGENTS_YAML,
                "tasks_yaml": CREW_TASKS_YAML,
                "inputs": {"topic": topic},
                "model": "gpt-4o-mini",
            },
            token,
        )
        assert status == 202, body
        runs[body["execution_id"]] = topic
    return runs


def _wait_mid_load(conn, runs, doomed_pid) -> list[str]:
    """Until the doomed host holds runs with a task in their step log and the other host holds some too."""
    deadline = time.monotonic() + 180  # a loaded machine takes its time to start ten crews
    while time.monotonic() < deadline:
        rows = conn.execute(
            "SELECT e.id::text, e.worker, (SELECT count(*) FROM crews_executionstep s WHERE "
            "s.execution_id = e.id AND s.kind = 'task') FROM crews_execution e WHERE e.status = "
            "'RUNNING' AND e.id = ANY(%s::uuid[])",
            [list(runs)],
        ).fetchall()
        held = [rid for rid, worker, _ in rows if f"pid {doomed_pid}" in worker]
        if len(held) >= 2 and len(held) < len(rows) and any(steps for rid, _, steps in rows if rid in held):
            return held
        time.sleep(0.2)
    statuses = conn.execute(
        "SELECT status, worker, error FROM crews_execution WHERE id = ANY(%s::uuid[])", [list(runs)]
    ).fetchall()
    raise AssertionError(f"runs never spread over both hosts mid-call: {statuses}")


def _wait_ended(conn, runs) -> list[tuple]:
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        rows = conn.execute(
            "SELECT id::text, status, attempts FROM crews_execution WHERE id = ANY(%s::uuid[])", [list(runs)]
        ).fetchall()
        if all(status in ("COMPLETED", "FAILED", "CANCELLED") for _, status, _ in rows):
            return rows
        time.sleep(1)
    raise AssertionError(f"runs did not end: {rows}")


def _logged_digests(conn, runs) -> dict[str, set[str]]:
    """The model calls in the step log, per run, as the provider's digest prefix they answered."""
    logged: dict[str, set[str]] = {rid: set() for rid in runs}
    for rid, response in conn.execute(
        "SELECT execution_id::text, response::text FROM crews_executionstep "
        "WHERE kind = 'llm' AND execution_id = ANY(%s::uuid[])",
        [list(runs)],
    ):
        logged[rid].add(re.search(r"finding-([0-9a-f]{6})", response).group(1))
    return logged


def test_one_of_two_hosts_dies_and_the_other_finishes_its_runs(tmp_path):
    from cryptography.fernet import Fernet

    provider = CountingProvider()
    # hosts share the secret keys, as a deployment must: a credential one host stored, the other reads
    shared = {**FAST_REAPER, "KAI_SECRET_KEYS": Fernet.generate_key().decode()}
    first = KaiUp(tmp_path / "a", **shared)
    second = watcher = None
    try:
        first.start(timeout=START_SECONDS)
        second = KaiUp(tmp_path / "b", db_name=first.db_name, prefix=first.prefix, **shared).start(
            timeout=START_SECONDS
        )
        token = _prepare(first, provider)
        watcher = SocketWatcher(first.base, token)
        watcher.start()
        assert watcher.subscribed.wait(15), "the socket on the first host did not subscribe"
        runs = _start_runs((first, second), token)
        doomed_pid = first.child_pid("runs-worker")
        with psycopg.connect(**database_connect_kwargs(first.db_name)) as conn:
            held = _wait_mid_load(conn, runs, doomed_pid)
            _kill_host(first)
            killed = time.monotonic()
            logged_at_kill = _logged_digests(conn, runs)  # nothing of the dead host commits any more
            assert watcher.closed.wait(10), "the socket did not see its host die"
            assert watcher.events, "the socket saw no event before its host died"
            survivor = SocketWatcher(second.base, token, last_event_id=watcher.last_seq)
            survivor.start()
            rows = _wait_ended(conn, runs)
            ended = time.monotonic() - killed
            completions = dict(
                conn.execute(
                    "SELECT execution_id::text, count(*) FROM crews_executionevent WHERE to_status = 'COMPLETED' "
                    "AND execution_id = ANY(%s::uuid[]) GROUP BY 1",
                    [list(runs)],
                ).fetchall()
            )
            from_log = conn.execute(
                "SELECT count(DISTINCT execution_id) FROM crews_executionlog WHERE execution_id "
                "= ANY(%s::uuid[]) AND message LIKE 'task %%answered from the run''s checkpoint'",
                [held],
            ).fetchone()[0]
        _assert_each_run_once(rows, runs, held, completions, provider, logged_at_kill)
        _assert_socket_caught_up(watcher, survivor, runs)
        print(
            f"\ntwo hosts: {len(runs)} crew runs, {len(held)} on the killed host; lost "
            f"{sum(s != 'COMPLETED' for _, s, _ in rows)}; completed calls repeated 0 of "
            f"{sum(map(len, logged_at_kill.values()))} logged at the kill; {from_log} resumed from their "
            f"checkpoint; all ended {ended:.1f} s after the kill; socket caught up on the survivor"
        )
        assert from_log >= 1  # a run the dead host had a logged call of took it from the log
    finally:
        for socket in (watcher, locals().get("survivor")):
            if socket is not None:
                socket.stop.set()
        if second is not None:
            second.stop()
        first.stop()
        drop_database(first.db_name)
        provider.httpd.shutdown()


def _assert_each_run_once(rows, runs, held, completions, provider, logged_at_kill) -> None:
    assert [status for _, status, _ in rows] == ["COMPLETED"] * len(runs), rows  # none lost
    assert all(completions.get(rid) == 1 for rid in runs), completions  # each COMPLETED once
    attempts = {rid: n for rid, _, n in rows}
    assert all(attempts[rid] == 2 for rid in held), attempts  # the dead host's runs: once more, on the survivor
    assert all(attempts[rid] == 1 for rid in runs if rid not in held), attempts
    for rid, topic in runs.items():
        calls = [digest for t, digest in provider.completed if t == topic]
        assert len(set(calls)) == TASKS, (topic, calls)
        for prefix in logged_at_kill[rid]:  # a call the dead host had logged was never answered again
            assert sum(d.startswith(prefix) for d in calls) == 1, (topic, prefix, calls)
        # only a call cut off by the kill (answered to a dead peer, never logged) may be asked again
        assert len(calls) <= TASKS + (rid in held), (topic, calls)


def _assert_socket_caught_up(watcher: SocketWatcher, survivor: SocketWatcher, runs) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done = {rid for _, kind, rid in watcher.events + survivor.events if kind == "execution.completed"}
        if set(runs) <= done:
            break
        time.sleep(0.3)
    assert survivor.subscribed.is_set() and not survivor.closed.is_set(), "no socket on the survivor"
    seqs = [seq for seq, *_ in watcher.events + survivor.events]
    assert len(seqs) == len(set(seqs)), "an event came twice over the two sockets"
    assert all(seq > watcher.last_seq for seq, *_ in survivor.events)
    completed = [rid for _, kind, rid in watcher.events + survivor.events if kind == "execution.completed"]
    assert sorted(completed) == sorted(runs), completed  # each run's completion once, none missed
