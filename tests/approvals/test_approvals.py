"""Approvals in-process (the runner called directly): tool calls that need approval, cancel while
parked, the service rules and the API's filters. The worker round trip is in test_worker.py."""

from __future__ import annotations

import pytest

from apps.approvals import services
from apps.approvals.models import Approval
from apps.crews.specs import parse_crew
from apps.runs import lifecycle
from apps.runs import services as crew_services
from apps.runs.models import Execution, ExecutionKind, TraceSpan, UsageRollup
from tests.crews.conftest import make_agent
from tests.helpers import assert_envelope

pytestmark = pytest.mark.django_db(transaction=True)

AGENTS = "calc:\n  role: Calculator\n  goal: Compute\n  backstory: Precise.\n  tools: [calculator]\n"
TASKS = (
    'sum_task:\n  description: "Compute\\n/tool calculator {\\"expression\\": \\"6*7\\"}"\n'
    "  expected_output: A number\n  agent: calc\n"
)


def _gate_calculator(member, client_for):
    from apps.agents.models import Tool

    tool = Tool.objects.for_org(member.organization).get(name="calculator")
    client = client_for(member)
    bad = client.patch(f"/api/v1/tools/{tool.pk}", {"configuration": {"requires_approval": "yes"}}, format="json")
    assert_envelope(bad, 400)
    response = client.patch(f"/api/v1/tools/{tool.pk}", {"configuration": {"requires_approval": True}}, format="json")
    assert response.status_code == 200, response.content


def _crew_run(member, tasks=TASKS):
    execution = crew_services.execution_create(
        organization=member.organization,
        actor=member.user,
        kind=ExecutionKind.CREW,
        enqueue=False,
        definition={"name": "calc", "agents_yaml": AGENTS, "tasks_yaml": tasks, "process": "sequential"},
    )
    return execution


def test_a_tool_that_requires_approval_parks_the_run_and_runs_with_the_edited_arguments(member, client_for):
    _gate_calculator(member, client_for)
    execution = _crew_run(member)
    assert lifecycle.run(execution.pk, worker="w") == "waiting_for_approval"
    execution.refresh_from_db()
    assert execution.status == "WAITING_FOR_APPROVAL"
    approval = Approval.objects.get(execution=execution)
    assert approval.source == "tool_call" and approval.step_id == "sum_task"
    assert approval.proposed["tool"] == "calculator" and approval.proposed["arguments"] == {"expression": "6*7"}
    assert not TraceSpan.objects.filter(execution=execution, kind="tool").exists()  # not called before approval
    assert TraceSpan.objects.filter(execution=execution, kind="llm").count() == 1

    services.approval_resolve(
        approval=approval, actor=member.user, role=member.role, approve=True, value={"arguments": {"expression": "6*8"}}
    )
    execution.refresh_from_db()
    assert execution.status == "PENDING" and execution.checkpoint["step"]["decision"]["arguments"] == {
        "expression": "6*8"
    }
    assert lifecycle.run(execution.pk, worker="w") == "completed"
    execution.refresh_from_db()
    # the resume did not use up the retry budget (a crew's: 3 attempts when its worker is lost)
    assert (execution.attempts, execution.max_attempts) == (2, 3 + 1)
    assert "48" in execution.result and "42" not in execution.result.split("returned:")[-1]
    tool = TraceSpan.objects.get(execution=execution, kind="tool")
    assert tool.attributes["arguments"] == {"expression": "6*8"}
    # the model's first call (the one that asked for the tool) is not repeated: 2 LLM calls in all
    assert TraceSpan.objects.filter(execution=execution, kind="llm").count() == 2
    rollup = UsageRollup.objects.for_org(member.organization).get()
    assert (rollup.executions, rollup.llm_calls) == (1, 2)  # one run, even across the pause


def test_cancelling_a_parked_run_ends_it_and_closes_its_approval(member, client_for):
    execution = _crew_run(
        member, tasks="t:\n  description: d\n  expected_output: o\n  agent: calc\n  human_input: true\n"
    )
    assert lifecycle.run(execution.pk, worker="w") == "waiting_for_approval"
    response = client_for(member).post(f"/api/v1/executions/{execution.pk}/cancel", {}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "CANCELLED"
    approval = Approval.objects.get(execution=execution)
    assert approval.status == "cancelled"
    assert_envelope(client_for(member).post(f"/api/v1/approvals/{approval.pk}/approve", {}, format="json"), 409)


@pytest.mark.django_db
def test_approve_route_rules(make_member, client_for, monkeypatch):
    owner = make_member("owner")
    agent_member = make_member("agent", organization=owner.organization)
    assignee = make_member("user", organization=owner.organization)
    other = make_member("developer", organization=owner.organization)
    agent = make_agent(owner)
    execution = crew_services.execution_create(
        organization=owner.organization, actor=owner.user, kind=ExecutionKind.AGENT_TASK, agent=agent, enqueue=False
    )
    approval = services.approval_request(
        organization=owner.organization,
        question="Ship it?",
        proposed={"output": "x"},
        assignee_user=assignee.user.email,
        source="workflow_step",
        step_id="s1",
    )
    # the machine identity never answers; an assigned approval is for its member (or an owner/admin)
    assert_envelope(client_for(agent_member).post(f"/api/v1/approvals/{approval.pk}/approve", {}, format="json"), 403)
    assert_envelope(client_for(other).post(f"/api/v1/approvals/{approval.pk}/reject", {}, format="json"), 403)
    bad = client_for(assignee).post(f"/api/v1/approvals/{approval.pk}/approve", {"nope": 1}, format="json")
    assert_envelope(bad, 400)
    resolved = []
    # a stand-in for the workflows app's handler, put back after the test
    monkeypatch.setitem(services._HANDLERS, "workflow_step", lambda a: resolved.append((a.pk, a.status, a.feedback)))
    ok = client_for(assignee).post(f"/api/v1/approvals/{approval.pk}/reject", {"feedback": "no"}, format="json")
    assert ok.status_code == 200 and ok.json()["resolved_by_id"] == str(assignee.user.pk)
    assert resolved == [(approval.pk, "rejected", "no")]
    listed = client_for(owner).get("/api/v1/approvals", {"pending": "false"}).json()
    assert [item["id"] for item in listed["items"]] == [str(approval.pk)]
    assert client_for(owner).get("/api/v1/approvals", {"pending": "true"}).json()["total"] == 0
    assert client_for(owner).post("/api/v1/approvals", {}, format="json").status_code == 405
    with pytest.raises(ValueError):
        services.approval_request(organization=owner.organization, question="q", assignee_role="agent")
    with pytest.raises(ValueError):
        services.approval_request(organization=owner.organization, question="q", assignee_user="nobody@example.com")
    assert Execution.objects.get(pk=execution.pk).status == "PENDING"


@pytest.mark.django_db
def test_crew_yaml_human_input_and_approval_are_validated():
    agents = "a:\n  role: r\n  goal: g\n  backstory: b\n"
    ok = parse_crew(
        agents,
        "t:\n  description: d\n  expected_output: o\n  agent: a\n  human_input: true\n"
        "  approval: {role: admin, timeout_seconds: 60, default: approve}\n",
    )
    assert ok.valid and ok.tasks[0].human_input and ok.tasks[0].approval["role"] == "admin"
    bad = parse_crew(
        agents,
        "t:\n  description: d\n  expected_output: o\n  agent: a\n  human_input: maybe\n  approval: {default: later}\n",
    )
    messages = [e.message for e in bad.errors]
    assert any("human_input" in m for m in messages) and any("approval" in m for m in messages)
