"""Crash recovery: a worker killed with SIGKILL mid-run leaves its run to the beat-driven reaper,
which fails it with "worker lost" once its heartbeat is 60 s old; a worker beside it is unaffected."""

from __future__ import annotations

import signal
import time

import pytest
from django.conf import settings
from django_redis import get_redis_connection

from apps.runs.models import ACTIVE_STATUSES, Execution
from tests.crews.conftest import make_agent, queues, wait_for
from tests.helpers import WorkerProcess

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _wait_worker(name: str, timeout: float = 120.0) -> None:
    redis = get_redis_connection("default")
    wait_for(
        lambda: any(True for _ in redis.scan_iter(f"{settings.KAI_REDIS_PREFIX}:workers:{name}*", count=1000)),
        timeout,
        message=f"worker {name} to announce itself",
    )


def test_sigkill_mid_run_ends_failed_worker_lost_and_the_other_worker_is_unaffected(
    make_member, client_for, beat_process
):
    member = make_member(plan="enterprise")
    agent = make_agent(member)
    client = client_for(member)
    doomed = WorkerProcess("-Q", queues(), "-n", "doomed@%h", "--concurrency", "1")
    survivor = None
    try:
        _wait_worker("doomed@")
        # ~200 tokens at 5/s: far longer than the test
        slow = {"description": " ".join(["chapter"] * 200), "params": {"tokens_per_s": 5}}
        first = client.post(f"/api/v1/agents/{agent.pk}/task", slow, format="json").json()["task_id"]
        wait_for(lambda: Execution.objects.get(pk=first).tokens_out > 0, 30, message="the first run to stream")
        assert Execution.objects.get(pk=first).worker.startswith("doomed@")

        survivor = WorkerProcess("-Q", queues(), "-n", "survivor@%h", "--concurrency", "4")
        _wait_worker("survivor@")
        # the doomed worker is full (concurrency 1, prefetch 1): this one goes to the survivor
        steady = {"description": " ".join(["step"] * 60), "params": {"tokens_per_s": 4}}
        second = client.post(f"/api/v1/agents/{agent.pk}/task", steady, format="json").json()["task_id"]
        wait_for(lambda: Execution.objects.get(pk=second).status == "RUNNING", 30, message="the second run")
        assert Execution.objects.get(pk=second).worker.startswith("survivor@")

        doomed.stop(sig=signal.SIGKILL)
        killed_at = time.monotonic()
        assert Execution.objects.get(pk=first).status == "RUNNING"  # nobody knows yet

        lost = wait_for(
            lambda: (e := Execution.objects.get(pk=first)).status != "RUNNING" and e,
            80,
            interval=0.5,
            message="the reaper to fail the lost run",
        )
        elapsed = time.monotonic() - killed_at
        assert lost.status == "FAILED" and lost.error.startswith("worker lost"), (lost.status, lost.error)
        assert elapsed <= 75, elapsed
        assert lost.events.order_by("-id").first().reason.startswith("worker lost")
        frozen = lost.tokens_out

        done = wait_for(
            lambda: (e := Execution.objects.get(pk=second)).is_terminal and e, 60, message="the second run to finish"
        )
        assert done.status == "COMPLETED" and done.worker.startswith("survivor@")
        assert not Execution.objects.filter(status__in=ACTIVE_STATUSES).exists()
        assert Execution.objects.get(pk=first).tokens_out == frozen
    finally:
        doomed.stop(sig=signal.SIGKILL)
        if survivor is not None:
            survivor.stop()
