"""Runs waiting on their model, on a real runs worker: a waiting run holds no database connection
(runs outnumber a one-connection pool and all wait at once), and a cancel ends the provider call
itself, not only the run's record of it."""

import time

import pytest
from django.conf import settings

from apps.runs.models import Execution, TraceSpan
from tests.crews.conftest import make_agent, wait_for
from tests.helpers import WorkerProcess, subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)


def _start(client, agent, latency_ms: int, count: int = 1) -> list[str]:
    items = [
        {"agent_id": str(agent.pk), "description": f"wait {i}", "params": {"latency_ms": latency_ms}}
        for i in range(count)
    ]
    response = client.post("/api/v1/executions/batch", {"executions": items}, format="json")
    assert response.status_code == 200 and response.json()["failed"] == 0, response.content
    return [r["execution"]["execution_id"] for r in response.json()["results"]]


def _worker(**env) -> WorkerProcess:
    worker = WorkerProcess("-Q", settings.KAI_RUNS_QUEUE, "-n", "inflight@%h", env=subprocess_env(**env))
    worker.wait_alive(timeout=120)
    return worker


def test_a_waiting_run_holds_no_database_connection(member, client_for):
    """Four runs wait 20 s on their model at once on a worker whose pool has ONE connection (and
    a short pool timeout): had any kept its connection while waiting, the others could not have
    been claimed, and would have failed on the pool timeout."""
    worker = _worker(KAI_DB_POOL_MIN=1, KAI_DB_POOL_MAX=1, KAI_DB_POOL_TIMEOUT=5, KAI_DB_POOL_BUSY_TIMEOUT=5)
    try:
        agent = make_agent(member, llm="builtin")
        ids = _start(client_for(member), agent, latency_ms=20000, count=4)
        wait_for(
            lambda: Execution.objects.filter(pk__in=ids, status="RUNNING").count() == 4,
            15,
            interval=0.1,
            message="4 runs RUNNING at once",
        )
        time.sleep(6)  # longer than the pool timeout: still all waiting on the model, none failed
        assert Execution.objects.filter(pk__in=ids, status="RUNNING").count() == 4
        wait_for(
            lambda: Execution.objects.filter(pk__in=ids, status="COMPLETED").count() == 4,
            60,
            message="4 runs COMPLETED",
        )
    finally:
        worker.stop()


def test_cancel_of_a_waiting_run_ends_its_provider_call(member, client_for):
    """The model would answer after 60 s; the cancel ends the call within seconds: the run is
    CANCELLED with no token, its llm span says cancelled, and the worker's thread is free again (a
    worker with ONE thread runs the next run at once)."""
    worker = WorkerProcess("-Q", settings.KAI_RUNS_QUEUE, "-n", "inflight@%h", "--concurrency", "1")
    try:
        worker.wait_alive(timeout=120)
        client = client_for(member)
        agent = make_agent(member, llm="builtin")
        [pk] = _start(client, agent, latency_ms=60000)
        wait_for(lambda: Execution.objects.get(pk=pk).status == "RUNNING", 30, message="RUNNING")
        time.sleep(1)  # the provider call has begun
        requested = time.monotonic()
        assert client.post(f"/api/v1/executions/{pk}/cancel").status_code == 200
        wait_for(lambda: Execution.objects.get(pk=pk).status == "CANCELLED", 10, interval=0.05, message="CANCELLED")
        assert time.monotonic() - requested < 10
        execution = Execution.objects.get(pk=pk)
        assert execution.tokens_out == 0
        llm = TraceSpan.objects.get(execution_id=pk, kind="llm")
        assert llm.status == "cancelled" and llm.tokens_out == 0
        [after] = _start(client, agent, latency_ms=0)  # the one thread is free: this one runs now
        wait_for(lambda: Execution.objects.get(pk=after).status == "COMPLETED", 20, message="the next run")
        assert time.monotonic() - requested < 30  # not after the 60 s model call
    finally:
        worker.stop()


def test_a_cancel_reaches_the_worker_before_its_next_heartbeat(member, client_for):
    """The worker's heartbeats are 30 s apart here, so a cancel read at the next beat would take up
    to 30 s: the cancel is pushed to the worker's Redis list, which its heartbeat thread waits on
    between beats, and the run ends CANCELLED at once."""
    worker = _worker(KAI_RUN_HEARTBEAT_SECONDS=30)
    try:
        client = client_for(member)
        agent = make_agent(member, llm="builtin")
        [pk] = _start(client, agent, latency_ms=60000)
        wait_for(lambda: Execution.objects.get(pk=pk).status == "RUNNING", 30, message="RUNNING")
        time.sleep(0.5)  # the provider call has begun
        requested = time.monotonic()
        assert client.post(f"/api/v1/executions/{pk}/cancel").status_code == 200
        wait_for(lambda: Execution.objects.get(pk=pk).status == "CANCELLED", 25, interval=0.05, message="CANCELLED")
        ended_after = time.monotonic() - requested
        assert ended_after < 10, f"CANCELLED {ended_after:.2f} s after the cancel (the next beat is 30 s away)"
        assert Execution.objects.get(pk=pk).tokens_out == 0
    finally:
        worker.stop()
