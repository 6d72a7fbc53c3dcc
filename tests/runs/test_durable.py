"""Durable steps: a crew whose worker is SIGKILLed mid-run resumes on another worker from its step
log — every model call the dead worker completed is answered from the log, so the provider
completes exactly one call per task and the output is the uninterrupted run's. Replay reruns an
ended run from one of its steps and reuses the outputs before it.

The provider is an OpenAI-compatible server in the test whose answer depends on the request (so
"the same output" means the same calls were answered the same way) and that counts the calls it
completed: an answer streamed to a peer that died is not a completed call."""

from __future__ import annotations

import json
import signal
import threading
import time

import pytest
from django.conf import settings
from django_redis import get_redis_connection

from apps.runs.models import Execution, ExecutionStep
from tests.agents.llm_server import DigestLLMServer
from tests.crews.conftest import AGENTS_YAML, TASKS_YAML, BeatProcess, queues, wait_for
from tests.helpers import WorkerProcess

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

TASKS = ["research_task", "analysis_task", "report_task"]


class CountingLLM(DigestLLMServer):
    """Streams an answer derived from the request word by word (request number ``hold`` first waits
    for ``release``); ``started`` counts requests, ``completed`` answers fully delivered."""

    def __init__(self):
        self.hold = 0
        self.release = threading.Event()
        self.started = 0
        self.completed = 0
        self.lock = threading.Lock()
        super().__init__(word_seconds=0.02)

    def on_request(self, body: dict) -> None:
        with self.lock:
            self.started += 1
            held = self.started == self.hold
        if held:
            self.release.wait(120)

    def on_answered(self, body: dict, digest: str) -> None:
        with self.lock:
            self.completed += 1

    def reset(self, hold: int = 0):
        with self.lock:
            self.started = self.completed = 0
            self.hold = hold
            self.release = threading.Event()


@pytest.fixture(scope="module")
def counting_llm():
    server = CountingLLM()
    yield server
    server.httpd.shutdown()


@pytest.fixture
def org(member, client_for, counting_llm):
    organization = member.organization
    organization.plan = "enterprise"
    organization.settings = {**(organization.settings or {}), "network_allowlist": ["127.0.0.1"]}
    organization.save(update_fields=["plan", "settings"])
    client = client_for(member)
    provider = client.post(
        "/api/v1/providers",
        {
            "name": "local",
            "provider": "openai",
            "base_url": f"{counting_llm.url}/v1",
            "api_key": "sk-local-1234",
            "default_model": "gpt-4o-mini",
        },
        format="json",
    )
    assert provider.status_code == 201, provider.content
    return member, client


def _start_crew(client) -> str:
    response = client.post(
        "/api/v1/executions",
        {"agents_yaml": AGENTS_YAML, "tasks_yaml": TASKS_YAML, "inputs": {"topic": "tides"}, "model": "gpt-4o-mini"},
        format="json",
    )
    assert response.status_code == 202, response.content
    return response.json()["execution_id"]


def _ended(execution_id, timeout: float) -> Execution:
    return wait_for(
        lambda: (e := Execution.objects.get(pk=execution_id)).is_terminal and e,
        timeout,
        interval=0.05,
        message=f"run {execution_id} to end",
    )


def _announced(name: str) -> None:
    redis = get_redis_connection("default")
    wait_for(
        lambda: any(True for _ in redis.scan_iter(f"{settings.KAI_REDIS_PREFIX}:workers:{name}*", count=1000)),
        120,
        message=f"worker {name} to announce itself",
    )


def test_sigkill_mid_crew_resumes_on_another_worker_without_repeating_a_completed_model_call(
    org, counting_llm, tmp_path
):
    _, client = org
    doomed = WorkerProcess("-Q", queues(), "-n", "doomed@%h", "--concurrency", "1")
    survivor = beat = None
    try:
        _announced("doomed@")
        # the uninterrupted run: what the resumed one must answer
        counting_llm.reset()
        baseline = _ended(_start_crew(client), 120)
        assert baseline.status == "COMPLETED", baseline.error
        assert counting_llm.completed == len(TASKS) and baseline.max_attempts == 3

        counting_llm.reset(hold=2)  # the provider holds the second call until the worker is dead
        execution_id = _start_crew(client)
        wait_for(
            lambda: (
                ExecutionStep.objects.filter(execution_id=execution_id, kind="llm").count() == 1
                and counting_llm.started == 2
            ),
            60,
            interval=0.02,
            message="the second task's model call",
        )
        survivor = WorkerProcess("-Q", queues(), "-n", "survivor@%h", "--concurrency", "4")
        beat = BeatProcess(tmp_path)
        _announced("survivor@")
        # the first task's call is in the log and the second one is at the provider: kill the worker
        assert counting_llm.started == 2 and counting_llm.completed == 1
        doomed.stop(sig=signal.SIGKILL)
        killed = time.monotonic()
        counting_llm.release.set()  # its answer now goes to a dead peer

        resumed = wait_for(
            lambda: (e := Execution.objects.get(pk=execution_id)).worker.startswith("survivor@") and e,
            90,
            interval=0.1,
            message="the survivor to resume the run",
        )
        time_to_resume = time.monotonic() - killed
        done = _ended(execution_id, 60)
        print(
            f"\nSIGKILL mid-crew: {counting_llm.completed} model calls completed for {len(TASKS)} tasks "
            f"({counting_llm.started} started, 1 cut off by the kill); resumed {time_to_resume:.1f} s after "
            f"the kill, ended {time.monotonic() - killed:.1f} s after it"
        )
        assert done.status == "COMPLETED", done.error
        assert done.result == baseline.result
        assert counting_llm.completed == len(TASKS)  # no completed call made twice
        assert counting_llm.started == len(TASKS) + 1  # the call cut off by the kill, asked again
        assert done.attempts == 2 and resumed.attempts == 2
        reasons = list(done.events.values_list("reason", flat=True))
        assert any(r.startswith("worker lost") and "requeued (attempt 2 of 3)" in r for r in reasons), reasons
        assert time_to_resume < 45, time_to_resume
        # the resumed attempt took the first task from the log, then logged the other two
        assert done.logs.filter(message="task research_task answered from the run's checkpoint").exists()
        assert sorted(
            ExecutionStep.objects.filter(execution_id=execution_id, kind="task").values_list("step", flat=True)
        ) == sorted(TASKS)
    finally:
        doomed.stop(sig=signal.SIGKILL)
        if survivor is not None:
            survivor.stop()
        if beat is not None:
            beat.stop()


def test_replay_reuses_the_outputs_before_from_step(org, counting_llm, make_member, client_for):
    _, client = org
    worker = WorkerProcess("-Q", queues(), "-n", "replay@%h")
    try:
        _announced("replay@")
        counting_llm.reset()
        source = _ended(_start_crew(client), 120)
        assert source.status == "COMPLETED", source.error
        assert counting_llm.completed == len(TASKS)

        bad = client.post(f"/api/v1/executions/{source.pk}/replay", {"from_step": "nope"}, format="json")
        assert bad.status_code == 400, bad.content
        assert "research_task, analysis_task, report_task" in json.dumps(bad.json())
        other = client_for(make_member("owner"))
        assert (
            other.post(
                f"/api/v1/executions/{source.pk}/replay", {"from_step": "analysis_task"}, format="json"
            ).status_code
            == 404
        )

        counting_llm.reset()
        response = client.post(f"/api/v1/executions/{source.pk}/replay", {"from_step": "analysis_task"}, format="json")
        assert response.status_code == 202, response.content
        body = response.json()
        assert body["replayed_from"] == str(source.pk) and body["execution_id"] != str(source.pk)
        replay = _ended(body["execution_id"], 120)
        assert replay.status == "COMPLETED", replay.error
        assert replay.result == source.result
        assert counting_llm.completed == 2  # analysis_task and report_task ran again; research_task did not
        assert client.get(f"/api/v1/executions/{replay.pk}").json()["replayed_from"] == str(source.pk)
        assert replay.logs.filter(message="task research_task answered from the run's checkpoint").exists()
        assert client.get(f"/api/v1/executions/{source.pk}").json()["replayed_from"] is None
    finally:
        worker.stop()


def test_replay_refuses_a_run_that_has_not_ended(org):
    _, client = org
    execution_id = _start_crew(client)  # no worker: it stays PENDING
    response = client.post(f"/api/v1/executions/{execution_id}/replay", {"from_step": "research_task"}, format="json")
    assert response.status_code == 409, response.content


def test_openapi_names_replayed_from_and_the_replay_route(api_client):
    schema = api_client.get("/api-openapi.json").json()
    assert "replayed_from" in schema["components"]["schemas"]["Execution"]["properties"]
    operation = schema["paths"]["/api/v1/executions/{id}/replay"]["post"]
    assert "202" in operation["responses"]
