"""A worker SIGKILLed in the middle of a step: the reaper fails the lost attempt ("worker lost"),
the retry policy runs the step again on the surviving worker, the run completes, and the two
attempts never overlap."""
from __future__ import annotations

import signal
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from django_redis import get_redis_connection

from apps.crews import runner
from apps.crews.models import Execution
from tests.helpers import WorkerProcess
from tests.workflows.conftest import definition, make_agent, make_workflow, step, steps_of, wait_for, wait_run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _wait_worker(name: str, timeout: float = 120.0) -> None:
    redis = get_redis_connection("default")
    wait_for(lambda: any(True for _ in redis.scan_iter(f"{settings.KAI_REDIS_PREFIX}:workers:{name}*")),
             timeout, interval=0.1, message=f"worker {name} to announce itself")


def test_a_step_whose_worker_is_killed_is_retried_and_the_run_completes(make_member, client_for):
    member = make_member(plan="enterprise")
    agent = make_agent(member)
    workflow = make_workflow(member, definition(
        [step("slow", agent, action="tell " + " ".join(["more"] * 30), llm_params={"tokens_per_s": 12}),
         step("after", agent, depends_on=["slow"])],
        error_handling={"strategy": "retry"},
        retry_policy={"max_attempts": 2, "backoff_strategy": "fixed", "delay_ms": 0}))
    doomed = WorkerProcess("-n", "doomed@%h", "--concurrency", "2")
    survivor = None
    try:
        _wait_worker("doomed@")
        run_id = client_for(member).post(f"/api/v1/workflows/{workflow.pk}/execute", {}, format="json").json()["run_id"]
        first = wait_for(lambda: Execution.objects.filter(step_run__run_id=run_id, tokens_out__gt=0).first(), 30,
                         message="the step to stream on the doomed worker")
        assert first.worker.startswith("doomed@")
        doomed.stop(sig=signal.SIGKILL)
        assert Execution.objects.get(pk=first.pk).status == "RUNNING"  # nobody knows yet
        frozen = Execution.objects.get(pk=first.pk).tokens_out

        # the reaper, 61 s later for this run (its heartbeat stopped with the worker)
        Execution.objects.filter(pk=first.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=61))
        assert runner.reap_stale()["failed"] == 1
        survivor = WorkerProcess("-n", "survivor@%h", "--concurrency", "4")

        run = wait_run(run_id, timeout=120)  # the survivor boots first
        assert run.execution.status == "COMPLETED", run.error
        attempts = [s for s in steps_of(run) if s.step_id == "slow"]
        assert [(s.attempt, s.state) for s in attempts] == [(1, "failed"), (2, "completed")]
        assert attempts[0].error.startswith("worker lost") and attempts[0].execution.tokens_out == frozen
        assert attempts[1].execution.worker.startswith("survivor@")
        # never twice at once: the retry started after the lost attempt had ended
        assert attempts[1].execution.started_at >= attempts[0].execution.completed_at
        assert [s.state for s in steps_of(run) if s.step_id == "after"] == ["completed"]
    finally:
        doomed.stop(sig=signal.SIGKILL)
        if survivor is not None:
            survivor.stop()
