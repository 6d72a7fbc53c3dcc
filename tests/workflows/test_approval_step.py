"""The workflow step ``type: approval`` (issue #14) through a REAL worker: the run parks
WAITING_FOR_APPROVAL with no worker holding it, a person's answer (or the deadline's default)
ends the step, and the DAG goes on from there without running a completed step again."""

from __future__ import annotations

import pytest

from apps.approvals.models import Approval
from apps.events.models import Event
from apps.runs.models import Execution, ExecutionEvent, TraceSpan
from apps.workflows.models import StepRun, WorkflowRun
from tests.helpers import assert_envelope
from tests.workflows.conftest import definition, make_agent, make_workflow, step, steps_of, wait_for, wait_run

pytestmark = [pytest.mark.django_db(transaction=True)]


def approval(step_id, *, depends_on=(), **extra) -> dict:
    body = {"id": step_id, "type": "approval", "question": f"Publish {step_id}?"}
    if depends_on:
        body["depends_on"] = list(depends_on)
    body.update(extra)
    return body


def execute(client, workflow, **body):
    response = client.post(f"/api/v1/workflows/{workflow.pk}/execute", body, format="json")
    assert response.status_code == 202, response.content
    return response.json()["run_id"]


def pending_approval(run_id, timeout: float = 30.0) -> Approval:
    return wait_for(
        lambda: Approval.objects.filter(workflow_run_id=run_id, status="pending").first(),
        timeout,
        message=f"run {run_id} to ask",
    )


def by_step(run):
    out: dict = {}
    for sr in steps_of(run):
        out.setdefault(sr.step_id, []).append(sr)
    return out


def history(execution_id) -> list[str]:
    return list(
        ExecutionEvent.objects.filter(execution_id=execution_id)
        .order_by("at", "id")
        .values_list("to_status", flat=True)
    )


@pytest.fixture
def setup(make_member, client_for, wf_worker):
    owner = make_member(plan="enterprise")
    writer = make_agent(owner, name="Writer")
    return owner, client_for(owner), writer


# --- through the worker ------------------------------------------------------------------------


def test_approve_with_an_edit_resumes_the_dag_with_the_edited_value_and_roles_are_enforced(
    setup, make_member, client_for
):
    owner, client, writer = setup
    org = owner.organization
    plain_user = make_member("user", organization=org)
    developer = make_member("developer", organization=org)
    workflow = make_workflow(
        owner,
        definition(
            [
                step("draft", writer, parameters={"topic": "{{ inputs.topic }}"}),
                approval(
                    "review",
                    depends_on=["draft"],
                    assignee_role="developer",
                    question="Publish this draft about {{ inputs.topic }}?",
                    proposed={"text": "{{ steps.draft.output }}", "channel": "blog"},
                ),
                step(
                    "publish",
                    writer,
                    depends_on=["review"],
                    parameters={"text": "{{ steps.review.json.text }}", "all": "{{ steps.review.output }}"},
                ),
            ]
        ),
    )
    run_id = execute(client, workflow, inputs={"topic": "owls"})
    asked = pending_approval(run_id)
    run = WorkflowRun.objects.select_related("execution").get(pk=run_id)
    steps = by_step(run)
    draft, review = steps["draft"][0], steps["review"][0]
    assert "publish" not in steps and draft.state == "completed"
    # parked: the run and the step wait in the database; nothing runs and nobody heartbeats
    assert run.execution.status == "WAITING_FOR_APPROVAL" and run.execution.heartbeat_at is None
    assert review.state == "active" and review.agent_id is None
    assert review.execution.status == "WAITING_FOR_APPROVAL" and review.execution.worker == "workflow engine"
    assert review.execution.heartbeat_at is None and review.execution.tokens_out == 0
    assert asked.source == "workflow_step" and asked.step_id == "review" and asked.execution_id == review.execution_id
    assert asked.question == "Publish this draft about owls?" and asked.assignee_role == "developer"
    assert asked.proposed == {"text": draft.output, "channel": "blog"}
    assert asked.default_action == "reject" and asked.deadline is None
    detail = client.get(f"/api/v1/workflow-runs/{run_id}").json()
    assert detail["status"] == "WAITING_FOR_APPROVAL"
    assert {s["step_id"]: s["status"] for s in detail["steps"]} == {
        "draft": "COMPLETED",
        "review": "WAITING_FOR_APPROVAL",
    }
    listed = client.get("/api/v1/approvals", {"pending": "true", "workflow_run": run_id}).json()
    assert [item["id"] for item in listed["items"]] == [str(asked.pk)]

    # a role below the step's assignee_role: 403 in the envelope, nothing changes
    refused = client_for(plain_user).post(f"/api/v1/approvals/{asked.pk}/approve", {"value": "x"}, format="json")
    assert_envelope(refused, 403)
    assert "developer" in refused.json()["detail"]
    assert Approval.objects.get(pk=asked.pk).status == "pending"
    assert Execution.objects.get(pk=run.execution_id).status == "WAITING_FOR_APPROVAL"

    edited = {"text": "EDITED-42", "channel": "newsletter"}
    answer = client_for(developer).post(f"/api/v1/approvals/{asked.pk}/approve", {"value": edited}, format="json")
    assert answer.status_code == 200, answer.content
    assert answer.json()["status"] == "approved" and answer.json()["edited_value"] == edited

    run = wait_run(run_id)
    assert run.execution.status == "COMPLETED", run.error
    steps = by_step(run)
    assert [len(steps[k]) for k in ("draft", "review", "publish")] == [1, 1, 1]
    review, publish = steps["review"][0], steps["publish"][0]
    assert review.state == "completed" and review.output == edited
    assert publish.state == "completed" and publish.inputs == {"text": "EDITED-42", "all": edited}
    assert run.results["review"] == edited
    # the draft ran exactly once: one attempt, one execution, one LLM call
    draft_runs = Execution.objects.filter(parent_id=run.execution_id, definition__step_id="draft")
    assert draft_runs.count() == 1
    assert TraceSpan.objects.filter(execution__in=draft_runs, kind="llm").count() == 1
    assert not TraceSpan.objects.filter(execution_id=review.execution_id).exists()
    assert history(review.execution_id) == [
        "PENDING",
        "PREPARING",
        "RUNNING",
        "WAITING_FOR_APPROVAL",
        "RUNNING",
        "COMPLETED",
    ]
    assert history(run.execution_id) == [
        "PENDING",
        "PREPARING",
        "RUNNING",
        "WAITING_FOR_APPROVAL",
        "RUNNING",
        "COMPLETED",
    ]
    # the approval's events are on the hub and on the workflow run's stream (its execution)
    events = list(
        Event.objects.filter(execution_id=run.execution_id, type__startswith="approval.")
        .order_by("id")
        .values_list("type", flat=True)
    )
    assert events == ["approval.requested", "approval.resolved"]
    resolved = Event.objects.get(execution_id=run.execution_id, type="approval.resolved").data
    assert resolved["step_id"] == "review" and resolved["workflow_run_id"] == str(run_id)
    assert resolved["edited_value"] == edited and resolved["execution_id"] == str(review.execution_id)
    again = client_for(developer).post(f"/api/v1/approvals/{asked.pk}/approve", {}, format="json")
    assert_envelope(again, 409)


def test_reject_fails_a_fail_fast_run_and_routes_a_fallback_run(setup):
    owner, client, writer = setup
    fail_fast = make_workflow(
        owner,
        definition(
            [
                approval("gate", default_action="approve"),
                step("after", writer, depends_on=["gate"]),
            ]
        ),
        name="Gated",
    )
    fallback = make_workflow(
        owner,
        definition(
            [step("draft", writer), approval("gate", depends_on=["draft"]), step("after", writer, depends_on=["gate"])],
            error_handling={
                "strategy": "fallback",
                "fallback_steps": [
                    step(
                        "notify",
                        writer,
                        parameters={"why": "{{ steps.gate.error }}", "draft": "{{ steps.draft.output }}"},
                    )
                ],
            },
            # a rejected approval is never asked again, whatever the retry policy
            retry_policy={"max_attempts": 3, "backoff_strategy": "fixed", "delay_ms": 0},
        ),
        name="With fallback",
    )
    first, second = execute(client, fail_fast), execute(client, fallback)
    for run_id in (first, second):
        asked = pending_approval(run_id)
        response = client.post(f"/api/v1/approvals/{asked.pk}/reject", {"feedback": "off-brand"}, format="json")
        assert response.status_code == 200 and response.json()["status"] == "rejected"

    failed = wait_run(first)
    assert failed.execution.status == "FAILED"
    assert failed.failed_step == "gate" and "rejected by" in failed.error and "off-brand" in failed.error
    steps = by_step(failed)
    assert "after" not in steps and [s.state for s in steps["gate"]] == ["failed"]
    assert steps["gate"][0].execution.status == "FAILED"
    assert history(failed.execution_id)[-3:] == ["RUNNING", "WAITING_FOR_APPROVAL", "FAILED"]

    routed = wait_run(second)
    assert routed.execution.status == "COMPLETED", routed.error
    steps = by_step(routed)
    assert [s.state for s in steps["gate"]] == ["failed"]  # one attempt despite max_attempts 3
    assert "after" not in steps and steps["notify"][0].state == "completed"
    assert "off-brand" in steps["notify"][0].inputs["why"]
    assert steps["notify"][0].inputs["draft"] == steps["draft"][0].output
    assert routed.execution.result["fallback_used"] is True and routed.failed_step == "gate"


def test_the_deadline_applies_the_default_action(setup):
    owner, client, writer = setup
    approves = make_workflow(
        owner,
        definition(
            [
                step("draft", writer),
                approval("gate", depends_on=["draft"], timeout_seconds=1, default_action="approve"),
                step("after", writer, depends_on=["gate"], parameters={"got": "{{ steps.gate.output }}"}),
            ]
        ),
        name="Approve by default",
    )
    rejects = make_workflow(owner, definition([approval("gate", timeout_seconds=1)]), name="Reject by default")
    approved_id, rejected_id = execute(client, approves), execute(client, rejects)
    asked = pending_approval(approved_id)
    assert asked.deadline is not None and asked.default_action == "approve"

    approved = wait_run(approved_id, timeout=40)
    assert approved.execution.status == "COMPLETED", approved.error
    steps = by_step(approved)
    # nobody edited: the proposed value (the dependency's output) is the step's output
    assert steps["gate"][0].output == steps["draft"][0].output
    assert steps["after"][0].inputs == {"got": steps["draft"][0].output}
    gate = Approval.objects.get(workflow_run_id=approved_id)
    assert gate.status == "approved" and gate.timed_out and gate.resolved_by is None

    rejected = wait_run(rejected_id, timeout=40)
    assert rejected.execution.status == "FAILED" and "deadline" in rejected.error
    gate = Approval.objects.get(workflow_run_id=rejected_id)
    assert gate.status == "rejected" and gate.timed_out


def test_cancelling_a_waiting_run_closes_its_approval(setup):
    owner, client, writer = setup
    workflow = make_workflow(owner, definition([approval("gate"), step("after", writer, depends_on=["gate"])]))
    by_workflow_cancel, by_execution_cancel = execute(client, workflow), execute(client, workflow)
    first, second = pending_approval(by_workflow_cancel), pending_approval(by_execution_cancel)

    response = client.post(f"/api/v1/workflow-runs/{by_workflow_cancel}/cancel", format="json")
    assert response.status_code == 200, response.content
    # the generic run cancel ends a parked run at once; the engine then stops its steps
    execution_id = WorkflowRun.objects.get(pk=by_execution_cancel).execution_id
    response = client.post(f"/api/v1/executions/{execution_id}/cancel", format="json")
    assert response.status_code == 200, response.content

    for run_id, asked in ((by_workflow_cancel, first), (by_execution_cancel, second)):
        run = wait_run(run_id)
        assert run.execution.status == "CANCELLED"
        gate = wait_for(
            lambda: (
                StepRun.objects.select_related("execution")
                .filter(run_id=run_id, step_id="gate", execution__status="CANCELLED")
                .first()
            ),
            30,
            message="the step to stop",
        )
        assert gate.execution.status == "CANCELLED"
        assert Approval.objects.get(pk=asked.pk).status == "cancelled"
        assert_envelope(client.post(f"/api/v1/approvals/{asked.pk}/approve", {}, format="json"), 409)
        assert not StepRun.objects.filter(run_id=run_id, step_id="after").exists()
    assert client.get("/api/v1/approvals", {"pending": "true"}).json()["total"] == 0


# --- validation (no worker) --------------------------------------------------------------------


def _errors(client, body) -> list[dict]:
    response = client.post("/api/v1/workflows/validate", body, format="json")
    assert response.status_code == 200, response.content
    return response.json()["errors"]


def test_an_approval_step_needs_no_agent_and_bad_fields_name_the_step(make_member, client_for):
    member = make_member()
    outsider = make_member()
    agent = make_agent(member)
    client = client_for(member)
    good = definition(
        [
            step("draft", agent),
            approval(
                "review",
                depends_on=["draft"],
                assignee_role="admin",
                timeout_seconds=3600,
                proposed="{{ steps.draft.output }}",
            ),
            step("after", agent, depends_on=["review"], parameters={"x": "{{ steps.review.output }}"}),
        ]
    )
    response = client.post("/api/v1/workflows/validate", good, format="json").json()
    assert response["valid"] is True, response["errors"]
    assert response["definition"]["steps"][1]["default_action"] == "reject"
    assert "parameters" not in response["definition"]["steps"][1]
    assert (
        _errors(
            client,
            definition(
                [
                    {
                        "id": "m",
                        "type": "approval",
                        "message": "Ship it?",
                        "assignee_user": member.user.email,
                        "deadline": "2030-01-01T00:00:00Z",
                        "default_action": "approve",
                    }
                ]
            ),
        )
        == []
    )

    # schema problems (checked first, every one with its step)
    schema = _errors(
        client,
        definition(
            [
                approval("bad_default", default_action="maybe"),
                approval("with_agent", agent_number=agent.agent_number),
                approval("bad_role", assignee_role="agent"),
                approval("bad_timeout", timeout_seconds=0),
            ]
        ),
    )
    by_step = {}
    for error in schema:
        by_step.setdefault(error["step_id"], []).append(error)
    assert set(by_step) == {"bad_default", "with_agent", "bad_role", "bad_timeout"}
    assert by_step["bad_default"][0]["field"] == "definition.steps[0].default_action"
    assert "'maybe' is not one of ['approve', 'reject']" in by_step["bad_default"][0]["message"]
    assert "'agent_number' was unexpected" in by_step["with_agent"][0]["message"]
    assert by_step["bad_role"][0]["field"] == "definition.steps[2].assignee_role"
    assert by_step["bad_timeout"][0]["field"] == "definition.steps[3].timeout_seconds"

    # then what the schema cannot say
    errors = _errors(
        client,
        definition(
            [
                {"id": "no_question", "type": "approval"},
                approval("stranger", assignee_user=outsider.user.email),
                approval("two_deadlines", timeout_seconds=5, deadline="2030-01-01T00:00:00Z"),
                approval("bad_deadline", deadline="next tuesday"),
                approval("both_assignees", assignee_role="admin", assignee_user=member.user.email),
                approval("reads_ahead", proposed="{{ steps.draft.output }}"),
                step("draft", agent),
            ]
        ),
    )
    by_step = {}
    for error in errors:
        by_step.setdefault(error["step_id"], []).append(error)
    assert set(by_step) == {"no_question", "stranger", "two_deadlines", "bad_deadline", "both_assignees", "reads_ahead"}
    assert by_step["no_question"] == [
        {
            "field": "definition.steps[0].question",
            "step_id": "no_question",
            "message": "an approval step asks a `question` (or `message`)",
        }
    ]
    assert by_step["stranger"][0]["message"].endswith("is not a member of this organization")
    assert "not both" in by_step["two_deadlines"][0]["message"]
    assert "not an ISO 8601 date-time" in by_step["bad_deadline"][0]["message"]
    assert "not both" in by_step["both_assignees"][0]["message"]
    assert by_step["reads_ahead"][0]["field"] == "definition.steps[5].proposed"
    assert "not among its dependencies" in by_step["reads_ahead"][0]["message"]

    # create refuses it with 400 WORKFLOW_003, naming the step in the message
    response = client.post(
        "/api/v1/workflows",
        {"name": "Bad", "definition": definition([{"id": "gate", "type": "approval", "default_action": "later"}])},
        format="json",
    )
    body = assert_envelope(response, 400, "WORKFLOW_003")
    assert "step 'gate'" in body["detail"] and {e["step_id"] for e in body["errors"]} == {"gate"}
    # an unknown step type is refused too
    typo = dict(step("x", agent), type="aproval")
    assert any(e["step_id"] == "x" and "type" in e["field"] for e in _errors(client, definition([typo])))
