"""Workflow runs through a real worker: every step is a run-engine Execution on Celery.

A step fails deterministically when its agent is disabled (the runner refuses disabled agents);
a step is slow when its ``llm_params`` slow the builtin provider down (``tokens_per_s``)."""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.agents.models import Agent
from apps.events.models import Event
from apps.runs import reaper
from apps.runs.models import Execution, TraceSpan
from apps.workflows.models import StepRun, Workflow, WorkflowRun
from tests.helpers import assert_envelope
from tests.workflows.conftest import definition, make_agent, make_workflow, step, steps_of, wait_for, wait_run

pytestmark = [pytest.mark.django_db(transaction=True)]

SLOW = {"tokens_per_s": 4}
LONG_ACTION = "narrate " + " ".join(["slowly"] * 80)


@pytest.fixture
def setup(make_member, client_for, wf_worker):
    member = make_member(plan="enterprise")
    good = make_agent(member, name="Good")
    bad = make_agent(member, name="Broken")
    Agent.objects.filter(pk=bad.pk).update(is_active=False)
    return member, client_for(member), good, bad


def execute(client, workflow, **body):
    response = client.post(f"/api/v1/workflows/{workflow.pk}/execute", body, format="json")
    assert response.status_code == 202, response.content
    return response.json()


def by_step(run):
    out: dict = {}
    for sr in steps_of(run):
        out.setdefault(sr.step_id, []).append(sr)
    return out


def overlapping(step_runs) -> bool:
    spans = sorted(
        (sr.execution.started_at or sr.execution.created_at, sr.execution.completed_at)
        for sr in step_runs
        if sr.execution_id
    )
    return any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:]))


def test_diamond_runs_b_and_c_together_after_a_and_d_last(setup):
    member, client, good, _ = setup
    workflow = make_workflow(
        member,
        definition(
            [
                step("a", good),
                step("b", good, depends_on=["a"]),
                step("c", good, depends_on=["a"]),
                step("d", good, depends_on=["b", "c"], parameters={"summary": "{{ steps.b.output }}"}),
            ]
        ),
    )
    started = execute(client, workflow, inputs={"topic": "graphs"})
    run = wait_run(started["run_id"])
    assert run.execution.status == "COMPLETED", run.error
    steps = by_step(run)
    assert {k: [s.state for s in v] for k, v in steps.items()} == {k: ["completed"] for k in "abcd"}
    a, b, c, d = (steps[k][0] for k in "abcd")
    # released together by one advance: both were queued before either ended
    assert a.completed_at <= b.execution.created_at < c.completed_at
    assert a.completed_at <= c.execution.created_at < b.completed_at
    assert d.started_at >= max(b.completed_at, c.completed_at)
    assert d.inputs == {"summary": b.output} and set(d.execution.definition["context"]) == {"b", "c"}
    for sr in (a, b, c, d):
        assert sr.execution.kind == "workflow_step" and sr.execution.parent_id == run.execution_id
        assert sr.output.startswith("Builtin reply to: Command: do ")
        assert TraceSpan.objects.filter(execution=sr.execution, kind="llm").exists()
    assert run.results == {k: steps[k][0].output for k in "abcd"}
    events = list(
        Event.objects.filter(execution_id=run.execution_id, type__startswith="workflow.")
        .order_by("id")
        .values_list("type", flat=True)
    )
    assert events[0] == "workflow.triggered" and events[-1] == "workflow.completed"
    assert events.count("workflow.step_completed") == 4
    done = Event.objects.get(execution_id=run.execution_id, type="workflow.completed").data
    assert done["success"] is True and done["duration"] > 0 and set(done["results"]) == set("abcd")
    history = client.get(f"/api/v1/workflows/{workflow.pk}/history").json()
    assert history["execution_count"] == 1 and history["success_rate"] == 1.0
    assert history["items"][0]["status"] == "COMPLETED" and history["items"][0]["version"] == 1
    detail = client.get(f"/api/v1/workflow-runs/{run.pk}").json()
    assert [s["step_id"] for s in detail["steps"]][0] == "a" and all(
        s["status"] == "COMPLETED" for s in detail["steps"]
    )


def test_fail_fast_cancels_the_running_branch_and_fails_the_run(setup):
    member, client, good, bad = setup
    workflow = make_workflow(
        member,
        definition(
            [
                step("slow", good, action=LONG_ACTION, llm_params=SLOW),
                step("a", good),
                step("broken", bad, depends_on=["a"]),
                step("after", good, depends_on=["broken"]),
            ]
        ),
    )
    run = wait_run(execute(client, workflow)["run_id"])
    assert run.execution.status == "FAILED"
    assert run.error.startswith("step 'broken' failed: agent 'Broken' is disabled") and run.failed_step == "broken"
    steps = by_step(run)
    assert steps["broken"][0].state == "failed" and steps["slow"][0].state == "cancelled"
    assert steps["slow"][0].execution.status == "CANCELLED" and "after" not in steps
    done = Event.objects.get(execution_id=run.execution_id, type="workflow.completed").data
    assert done["success"] is False and done["failed_steps"] == ["broken", "slow"]
    workflow.refresh_from_db()
    assert workflow.failure_count == 1 and workflow.success_rate == 0.0


def test_continue_keeps_going_and_dependents_see_the_failure(setup):
    member, client, good, bad = setup
    workflow = make_workflow(
        member,
        definition(
            [
                step("broken", bad),
                step("other", good),
                step(
                    "report",
                    good,
                    depends_on=["broken", "other"],
                    condition="steps.broken.failed && steps.other.completed",
                    parameters={"error": "{{ steps.broken.error }}"},
                ),
            ],
            error_handling={"strategy": "continue"},
        ),
    )
    run = wait_run(execute(client, workflow)["run_id"])
    assert run.execution.status == "COMPLETED"
    steps = by_step(run)
    assert [steps[k][0].state for k in ("broken", "other", "report")] == ["failed", "completed", "completed"]
    assert steps["report"][0].inputs == {"error": "agent 'Broken' is disabled"}
    assert run.execution.result["failed_steps"] == ["broken"]


def test_retry_strategy_fails_after_max_attempts(setup):
    member, client, good, bad = setup
    workflow = make_workflow(
        member,
        definition(
            [step("broken", bad)],
            error_handling={"strategy": "retry"},
            retry_policy={"max_attempts": 2, "backoff_strategy": "fixed", "delay_ms": 200},
        ),
    )
    run = wait_run(execute(client, workflow)["run_id"])
    assert run.execution.status == "FAILED" and "after 2 attempts" in run.error
    attempts = by_step(run)["broken"]
    assert [(s.attempt, s.state) for s in attempts] == [(1, "failed"), (2, "failed")]
    assert attempts[1].scheduled_for == attempts[0].completed_at + timedelta(milliseconds=200)
    assert not overlapping(attempts)


def test_fallback_runs_the_fallback_steps_instead(setup):
    member, client, good, bad = setup
    workflow = make_workflow(
        member,
        definition(
            [step("broken", bad), step("never", good, depends_on=["broken"])],
            error_handling={
                "strategy": "fallback",
                "notification_on_error": True,
                "fallback_steps": [
                    step("notify", good, parameters={"failed": "{{ steps.broken.error }}"}),
                    step("cleanup", good, depends_on=["notify"]),
                ],
            },
        ),
    )
    run = wait_run(execute(client, workflow)["run_id"])
    assert run.execution.status == "COMPLETED", run.error
    steps = by_step(run)
    assert "never" not in steps and steps["broken"][0].state == "failed"
    assert [steps[k][0].state for k in ("notify", "cleanup")] == ["completed", "completed"]
    assert steps["notify"][0].fallback and steps["notify"][0].inputs == {"failed": "agent 'Broken' is disabled"}
    assert run.execution.result["fallback_used"] is True and run.failed_step == "broken"


def test_retry_succeeds_on_attempt_3_with_linear_backoff(setup):
    member, client, good, bad = setup
    workflow = make_workflow(
        member,
        definition(
            [step("flaky", bad)],
            error_handling={"strategy": "retry"},
            retry_policy={"max_attempts": 3, "backoff_strategy": "linear", "delay_ms": 1000},
        ),
    )
    run_id = execute(client, workflow)["run_id"]
    wait_for(
        lambda: StepRun.objects.filter(run_id=run_id, step_id="flaky", attempt=2, state="failed").exists(),
        20,
        message="the second attempt to fail",
    )
    Agent.objects.filter(pk=bad.pk).update(is_active=True)  # the dependency recovers
    run = wait_run(run_id)
    assert run.execution.status == "COMPLETED", run.error
    first, second, third = by_step(run)["flaky"]
    assert [s.state for s in (first, second, third)] == ["failed", "failed", "completed"]
    assert second.scheduled_for == first.completed_at + timedelta(milliseconds=1000)  # 1000 × 1
    assert third.scheduled_for == second.completed_at + timedelta(milliseconds=2000)  # 1000 × 2
    for attempt in (second, third):
        assert attempt.execution.created_at >= attempt.scheduled_for
        assert attempt.execution.created_at - attempt.scheduled_for < timedelta(seconds=5)
    assert not overlapping([first, second, third])


def test_a_step_that_exceeds_its_timeout_is_cancelled_and_fails_the_run(setup):
    member, client, good, _ = setup
    workflow = make_workflow(
        member, definition([step("slow", good, action=LONG_ACTION, llm_params=SLOW, timeout_ms=1000)])
    )
    began = time.monotonic()
    run = wait_run(execute(client, workflow)["run_id"], timeout=20)
    assert time.monotonic() - began < 15
    assert run.execution.status == "FAILED" and run.error == "step 'slow' failed: timed out after 1000 ms"
    slow = by_step(run)["slow"][0]
    assert slow.state == "timed_out" and slow.timed_out and slow.execution.status == "CANCELLED"
    assert 0 < slow.execution.tokens_out < 80


def test_the_workflow_timeout_fails_the_run(setup):
    member, client, good, _ = setup
    workflow = make_workflow(
        member, definition([step("slow", good, action=LONG_ACTION, llm_params=SLOW)], timeout_ms=1500)
    )
    run = wait_run(execute(client, workflow)["run_id"], timeout=20)
    assert run.execution.status == "FAILED" and run.error == "the workflow timed out after 1500 ms"
    assert by_step(run)["slow"][0].execution.status == "CANCELLED"


def test_a_false_condition_skips_its_branch(setup):
    member, client, good, _ = setup
    workflow = make_workflow(
        member,
        definition(
            [
                step("a", good),
                step("fast", good, depends_on=["a"], condition="inputs.mode == 'fast'"),
                step("careful", good, depends_on=["a"], condition="inputs.mode == 'slow' && steps.a.completed"),
                step("join", good, depends_on=["fast", "careful"]),
            ]
        ),
    )
    response = client.post(
        f"/api/v1/workflows/{workflow.pk}/execute",
        {"input_data": {"mode": "slow"}, "wait_for_completion": True, "timeout_ms": 120000},
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "COMPLETED" and {s["step_id"]: s["status"] for s in body["steps"]} == {
        "a": "COMPLETED",
        "fast": "SKIPPED",
        "careful": "COMPLETED",
        "join": "COMPLETED",
    }
    run = wait_run(body["run_id"])
    assert run.execution.status == "COMPLETED"
    steps = by_step(run)
    assert steps["fast"][0].state == "skipped" and steps["fast"][0].execution_id is None
    assert "condition is false" in steps["fast"][0].error
    assert [steps[k][0].state for k in ("a", "careful", "join")] == ["completed"] * 3
    assert set(steps["join"][0].execution.definition["context"]) == {"careful"}
    assert run.execution.result["steps"]["fast"] == "SKIPPED"


def test_cancelling_a_run_stops_its_steps(setup):
    member, client, good, _ = setup
    workflow = make_workflow(
        member,
        definition([step("slow", good, action=LONG_ACTION, llm_params=SLOW), step("next", good, depends_on=["slow"])]),
    )
    run_id = execute(client, workflow)["run_id"]
    wait_for(
        lambda: Execution.objects.filter(step_run__run_id=run_id, status="RUNNING").exists(),
        20,
        message="the step to run",
    )
    cancelled = client.post(f"/api/v1/workflow-runs/{run_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["cancel_requested"] is True
    run = wait_run(run_id, timeout=15)
    assert run.execution.status == "CANCELLED"
    assert [(s.step_id, s.state) for s in steps_of(run)] == [("slow", "cancelled")]
    assert_envelope(client.post(f"/api/v1/workflow-runs/{run_id}/cancel"), 409)


def _sign(secret: str, body: bytes, timestamp: int | None = None) -> dict:
    ts = str(timestamp or int(time.time()))
    digest = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"HTTP_X_KAI_TIMESTAMP": ts, "HTTP_X_KAI_SIGNATURE": f"sha256={digest}"}


def test_webhook_trigger_checks_the_signature(setup, api_client):
    member, client, good, _ = setup
    workflow = make_workflow(
        member,
        definition(
            [step("a", good, parameters={"ref": "{{ inputs.ref }}"})],
            trigger={"type": "webhook", "conditions": {"event": "push"}},
        ),
    )
    url = f"/api/v1/workflow-hooks/{workflow.webhook_token}"
    body = json.dumps({"event": "push", "ref": "main"}).encode()

    assert_envelope(api_client.post(url, body, content_type="application/json"), 401, "AUTH_001")
    forged = _sign("whsec_not-the-secret", body)
    assert_envelope(api_client.post(url, body, content_type="application/json", **forged), 401)
    tampered = _sign(workflow.secret, body)
    assert_envelope(
        api_client.post(url, body.replace(b"main", b"prod"), content_type="application/json", **tampered), 401
    )
    stale = _sign(workflow.secret, body, timestamp=int(time.time()) - 3600)
    assert_envelope(api_client.post(url, body, content_type="application/json", **stale), 401)
    assert_envelope(
        api_client.post(
            "/api/v1/workflow-hooks/nope", body, content_type="application/json", **_sign(workflow.secret, body)
        ),
        404,
    )
    assert not WorkflowRun.objects.exists()

    other = json.dumps({"event": "tag"}).encode()
    ignored = api_client.post(url, other, content_type="application/json", **_sign(workflow.secret, other))
    assert ignored.status_code == 200 and ignored.json()["triggered"] is False

    headers = {**_sign(workflow.secret, body), "HTTP_X_KAI_DELIVERY": "d-1"}
    accepted = api_client.post(url, body, content_type="application/json", **headers)
    assert accepted.status_code == 202, accepted.content
    again = api_client.post(url, body, content_type="application/json", **headers)
    assert again.json()["run_id"] == accepted.json()["run_id"]  # a redelivery starts nothing new
    run = wait_run(accepted.json()["run_id"])
    assert run.execution.status == "COMPLETED" and run.trigger_type == "webhook" and run.inputs["ref"] == "main"
    assert by_step(run)["a"][0].inputs == {"ref": "main"}
    assert Workflow.objects.get(pk=workflow.pk).execution_count == 1
    triggered = Event.objects.get(type="workflow.triggered", execution_id=run.execution_id).data
    assert triggered["trigger_source"] == "webhook d-1" and triggered["execution_id"] == str(run.execution_id)


def test_an_agent_completion_starts_the_workflow_listening_for_it(setup):
    member, client, good, _ = setup
    source = make_agent(member, name="Source")
    workflow = make_workflow(
        member,
        definition(
            [step("follow_up", good)], trigger={"type": "agent_completion", "source_agent": source.agent_number}
        ),
    )
    task = client.post(f"/api/v1/agents/{source.pk}/task", {"description": "research"}, format="json").json()
    run = wait_for(lambda: WorkflowRun.objects.filter(workflow=workflow).first(), 20, message="the triggered run")
    run = wait_run(run.pk)
    assert run.execution.status == "COMPLETED" and run.trigger_type == "agent_completion"
    assert run.inputs["execution_id"] == task["task_id"] and run.inputs["agent_number"] == source.agent_number


def test_a_step_whose_worker_is_killed_is_retried_and_the_run_completes(setup, wf_worker):
    """SIGKILL the worker in the middle of a step: the reaper fails the lost attempt ("worker lost"),
    the retry policy runs the step again on a new worker, the run completes, and the two attempts
    never overlap. (The killed worker is the module's; the new one takes its place.)"""
    member, client, good, _ = setup
    workflow = make_workflow(
        member,
        definition(
            [
                step("slow", good, action="tell " + " ".join(["more"] * 40), llm_params={"tokens_per_s": 8}),
                step("after", good, depends_on=["slow"]),
            ],
            error_handling={"strategy": "retry"},
            retry_policy={"max_attempts": 2, "backoff_strategy": "fixed", "delay_ms": 0},
        ),
    )
    run_id = execute(client, workflow)["run_id"]
    first = wait_for(
        lambda: Execution.objects.filter(step_run__run_id=run_id, tokens_out__gt=0).first(),
        30,
        message="the step to stream",
    )
    wf_worker.worker.stop(sig=signal.SIGKILL)
    assert Execution.objects.get(pk=first.pk).status == "RUNNING"  # nobody knows yet
    frozen = Execution.objects.get(pk=first.pk).tokens_out

    # the reaper, 61 s later for this run (its heartbeat stopped with the worker)
    Execution.objects.filter(pk=first.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=61))
    assert reaper.reap_stale()["failed"] == 1
    wf_worker.replace("--concurrency", "8", "-n", "survivor@%h")

    run = wait_run(run_id, timeout=120)  # the new worker boots first
    assert run.execution.status == "COMPLETED", run.error
    attempts = by_step(run)["slow"]
    assert [(s.attempt, s.state) for s in attempts] == [(1, "failed"), (2, "completed")]
    assert attempts[0].error.startswith("worker lost") and attempts[0].execution.tokens_out == frozen
    assert attempts[0].execution.worker.startswith("wf@") and attempts[1].execution.worker.startswith("survivor@")
    # never twice at once: the retry started after the lost attempt had ended
    assert attempts[1].execution.started_at >= attempts[0].execution.completed_at
    assert [s.state for s in by_step(run)["after"]] == ["completed"]
