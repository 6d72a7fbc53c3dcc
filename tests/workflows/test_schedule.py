"""The schedule trigger: a scheduler schedule whose target is a workflow starts one run per tick."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from apps.scheduler.services import schedule_fire
from apps.workflows.models import WorkflowRun
from tests.helpers import assert_envelope
from tests.workflows.conftest import definition, make_agent, make_workflow, step

pytestmark = pytest.mark.django_db
URL = "/api/v1/scheduler/schedules"


def test_a_schedule_runs_the_workflow_once_per_tick(make_member, client_for):
    member, other = make_member(), make_member()
    agent = make_agent(member)
    workflow = make_workflow(member, definition([step("a", agent)], trigger={"type": "schedule"}))
    foreign = make_workflow(other, definition([step("a", make_agent(other))]))
    client = client_for(member)
    refused = client.post(
        URL, {"name": "x", "cron_expression": "0 9 * * *", "workflow_id": str(foreign.pk)}, format="json"
    )
    assert [e["field"] for e in assert_envelope(refused, 400)["errors"]] == ["workflow_id"]

    created = client.post(
        URL,
        {
            "name": "Nightly",
            "cron_expression": "0 9 * * *",
            "workflow_id": str(workflow.pk),
            "inputs": {"mode": "nightly"},
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["target_type"] == "workflow" and body["workflow_id"] == str(workflow.pk)

    now = datetime(2026, 3, 2, 9, 0, 30, tzinfo=UTC)
    fired = schedule_fire(schedule_id=body["id"], now=now)
    again = schedule_fire(schedule_id=body["id"], now=now)
    assert fired.outcome == "fired" and again.outcome == "duplicate" and again.execution_id == fired.execution_id
    run = WorkflowRun.objects.get(execution_id=fired.execution_id)
    assert run.workflow_id == workflow.pk and run.trigger_type == "schedule" and run.inputs == {"mode": "nightly"}
    assert run.execution.status == "RUNNING" and run.version == 1

    now_run = client.post(f"{URL}/{body['id']}/run-now").json()
    assert WorkflowRun.objects.filter(workflow=workflow).count() == 2
    assert WorkflowRun.objects.filter(execution_id=now_run["execution_id"]).exists()


def test_mcp_workflow_execute_starts_a_run(member, client_for):
    agent = make_agent(member)
    workflow = make_workflow(member, definition([step("a", agent)]))
    message = {
        "id": "m-1",
        "version": "1.0",
        "type": "request",
        "method": "workflow.execute",
        "timestamp": "2026-01-01T00:00:00Z",
        "source": {"agent_number": agent.agent_number, "agent_id": str(agent.pk)},
        "params": {"workflow_id": str(workflow.pk), "input_data": {"x": 1}, "priority": "high"},
    }
    answer = client_for(member).post("/api/v1/mcp", message, format="json").json()
    assert answer["type"] == "response", answer
    run = WorkflowRun.objects.get(pk=answer["result"]["run_id"])
    assert run.inputs == {"x": 1} and run.execution.priority == 8 and run.trigger_source == "mcp:m-1"
