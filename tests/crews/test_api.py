"""Crews, task definitions, orchestrations and executions over the API (no worker needed: runs stay
PENDING because nothing consumes the queue in these tests)."""

import pytest

from apps.crews.models import Crew, TaskDefinition
from apps.runs.models import Execution, ExecutionEvent
from tests.crews.conftest import AGENTS_YAML, TASKS_YAML, make_agent, make_crew
from tests.helpers import assert_envelope

pytestmark = pytest.mark.django_db


# --- crews -------------------------------------------------------------------------------------


def test_crew_crud_with_partial_put(owner_client):
    body = {
        "name": "Research Team",
        "description": "Team",
        "agents_yaml": AGENTS_YAML,
        "tasks_yaml": TASKS_YAML,
        "model": "gpt-4",
        "process": "sequential",
        "verbose": True,
    }
    created = owner_client.post("/api/v1/crews", body, format="json")
    assert created.status_code == 201, created.content
    crew_id = created.json()["id"]
    updated = owner_client.put(f"/api/v1/crews/{crew_id}", {"name": "Updated Team"}, format="json")
    assert updated.status_code == 200 and updated.json()["name"] == "Updated Team"
    assert updated.json()["agents_yaml"] == AGENTS_YAML
    listed = owner_client.get("/api/v1/crews").json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == crew_id
    assert owner_client.delete(f"/api/v1/crews/{crew_id}").status_code == 204
    assert not Crew.objects.filter(pk=crew_id).exists()


def test_crew_with_invalid_yaml_is_refused_with_lines(owner_client):
    response = owner_client.post(
        "/api/v1/crews",
        {"name": "x", "agents_yaml": AGENTS_YAML, "tasks_yaml": TASKS_YAML.replace("agent: writer", "agent: ghost")},
        format="json",
    )
    body = assert_envelope(response, 400, "GENERAL_001")
    assert body["errors"] == [{"field": "tasks_yaml", "message": body["errors"][0]["message"]}]
    assert body["errors"][0]["message"].startswith("line 12: task 'report_task' names unknown agent 'ghost'")


def test_crews_debug_reports_every_error_with_its_line(owner_client):
    response = owner_client.post(
        "/api/v1/crews/debug", {"agents_yaml": "a: [", "tasks_yaml": TASKS_YAML}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    assert body["valid"] is False
    assert body["errors"][0]["field"] == "agents_yaml" and body["errors"][0]["line"] == 1
    ok = owner_client.post(
        "/api/v1/crews/debug", {"agents_yaml": AGENTS_YAML, "tasks_yaml": TASKS_YAML}, format="json"
    ).json()
    assert ok["valid"] is True and ok["errors"] == [] and ok["placeholders"] == ["topic"]
    assert [t["key"] for t in ok["tasks"]] == ["research_task", "analysis_task", "report_task"]


def test_crew_export_then_import_round_trips(owner_client, member):
    crew = make_crew(member, description="d", model="builtin")
    exported = owner_client.get(f"/api/v1/crews/{crew.pk}/export", HTTP_ACCEPT="application/json").json()
    assert exported["files"]["agents.yaml"] == AGENTS_YAML
    imported = owner_client.post(
        "/api/v1/crews/import", {"crew_yaml": exported["crew_yaml"], "name": "Copy"}, format="json"
    )
    assert imported.status_code == 201, imported.content
    copy = Crew.objects.get(pk=imported.json()["id"])
    assert copy.name == "Copy" and copy.model == "builtin"
    from apps.crews.specs import parse_crew

    assert [t.key for t in parse_crew(copy.agents_yaml, copy.tasks_yaml).tasks] == [
        "research_task",
        "analysis_task",
        "report_task",
    ]
    bad = owner_client.post("/api/v1/crews/import", {"crew_yaml": "name: x\nagents: {\n"}, format="json")
    assert "YAML syntax error" in assert_envelope(bad, 400)["errors"][0]["message"]


def test_unknown_body_fields_are_refused(owner_client):
    response = owner_client.post(
        "/api/v1/crews",
        {"name": "x", "agents_yaml": AGENTS_YAML, "tasks_yaml": TASKS_YAML, "colour": "blue"},
        format="json",
    )
    assert assert_envelope(response, 400)["errors"] == [{"field": "colour", "message": "Unknown field."}]


# --- task definitions --------------------------------------------------------------------------


def test_task_definitions_partial_put_and_full_replace(owner_client):
    created = owner_client.post(
        "/api/v1/tasks",
        {
            "name": "Research Task",
            "description": "Research AI",
            "expected_output": "A report",
            "agent": "research_agent",
            "tools": ["search_tool"],
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    task_id = created.json()["id"]
    partial = owner_client.put(f"/api/v1/tasks/{task_id}", {"name": "Updated Task Name"}, format="json").json()
    assert partial["name"] == "Updated Task Name" and partial["tools"] == ["search_tool"]
    full = owner_client.put(
        f"/api/v1/tasks/{task_id}/full",
        {
            "name": "Updated Research Task",
            "description": "Enhanced research requirements",
            "expected_output": "Detailed research report",
        },
        format="json",
    )
    assert full.status_code == 200, full.content
    assert full.json()["tools"] == [] and full.json()["agent"] == ""  # replaced, not merged
    missing = owner_client.put(f"/api/v1/tasks/{task_id}/full", {"name": "only a name"}, format="json")
    assert assert_envelope(missing, 400)["errors"][0]["field"] == "description"
    assert TaskDefinition.objects.get(pk=task_id).description == "Enhanced research requirements"


def test_task_status_route_does_not_clash_with_task_definitions(owner_client, member):
    agent = make_agent(member)
    accepted = owner_client.post(
        f"/api/v1/agents/{agent.pk}/task", {"description": "Summarise the news"}, format="json"
    )
    assert accepted.status_code == 202, accepted.content
    task_id = accepted.json()["task_id"]
    assert accepted.json()["status"] == "PENDING"
    status = owner_client.get(f"/api/v1/tasks/{task_id}/status")
    assert status.status_code == 200 and status.json()["status"] == "PENDING"
    assert status.json()["kind"] == "agent_task"
    # /tasks/{id} is a task definition: an execution id is not one
    assert_envelope(owner_client.get(f"/api/v1/tasks/{task_id}"), 404)
    assert owner_client.get(f"/api/tasks/{task_id}/status").status_code == 200


# --- orchestrations ----------------------------------------------------------------------------


def test_orchestration_agent_ids_must_be_the_organizations_agents(owner_client, member, make_member):
    mine = make_agent(member, name="Mine")
    theirs = make_agent(make_member(), name="Theirs")
    response = owner_client.post(
        "/api/v1/orchestrations",
        {"name": "O", "pattern": "router", "config_yaml": "", "agent_ids": [str(mine.pk), str(theirs.pk)]},
        format="json",
    )
    body = assert_envelope(response, 400)
    assert body["errors"] == [{"field": "agent_ids[1]", "message": f"No agent {theirs.pk} in this organization."}]
    ok = owner_client.post(
        "/api/v1/orchestrations",
        {"name": "O", "pattern": "router", "config_yaml": "routing:\n  mode: semantic\n", "agent_ids": [str(mine.pk)]},
        format="json",
    )
    assert ok.status_code == 201 and ok.json()["status"] == "draft"
    bad_yaml = owner_client.put(f"/api/v1/orchestrations/{ok.json()['id']}", {"config_yaml": "a: [\n"}, format="json")
    assert "YAML syntax error" in assert_envelope(bad_yaml, 400)["errors"][0]["message"]
    too_few = owner_client.post(f"/api/v1/orchestrations/{ok.json()['id']}/execute", {}, format="json")
    assert "needs at least 2 agents" in assert_envelope(too_few, 400)["errors"][0]["message"]
    unknown_pattern = owner_client.post("/api/v1/orchestrations", {"name": "O", "pattern": "swarm"}, format="json")
    assert assert_envelope(unknown_pattern, 400)["errors"][0]["field"] == "pattern"


# --- executions --------------------------------------------------------------------------------


def test_creating_an_execution_answers_pending_upper_case(owner_client, member):
    crew = make_crew(member)
    response = owner_client.post(
        "/api/v1/executions", {"crew_id": str(crew.pk), "inputs": {"topic": "AI"}, "model": "gpt-4"}, format="json"
    )
    assert response.status_code == 202, response.content
    body = response.json()
    assert set(body) >= {"execution_id", "status", "message", "run_name"}
    assert body["status"] == "PENDING" and body["message"] == "Execution started successfully"
    assert body["run_name"].startswith("Research Team")
    execution = Execution.objects.get(pk=body["execution_id"])
    assert execution.kind == "crew" and execution.model == "gpt-4" and execution.inputs == {"topic": "AI"}
    assert execution.definition["tasks_yaml"] == TASKS_YAML  # frozen: later edits of the crew do not change it
    [event] = ExecutionEvent.objects.filter(execution=execution)
    assert (event.from_status, event.to_status) == ("", "PENDING")
    detail = owner_client.get(f"/api/v1/executions/{execution.pk}").json()
    assert detail["execution_id"] == str(execution.pk) and detail["status"] == "PENDING"


def test_execution_create_validates_its_target(owner_client, member, make_member):
    other_crew = make_crew(make_member())
    response = owner_client.post("/api/v1/executions", {"crew_id": str(other_crew.pk)}, format="json")
    assert assert_envelope(response, 400)["errors"][0]["field"] == "crew_id"
    neither = owner_client.post("/api/v1/executions", {"inputs": {}}, format="json")
    assert "exactly one of" in assert_envelope(neither, 400)["detail"]
    inline = owner_client.post(
        "/api/v1/executions", {"agents_yaml": AGENTS_YAML, "tasks_yaml": "x: 1\n"}, format="json"
    )
    assert assert_envelope(inline, 400)["errors"][0]["field"] == "tasks_yaml"


def test_execution_list_filters_and_history(owner_client, member):
    crew = make_crew(member)
    agent = make_agent(member)
    first = owner_client.post(
        "/api/v1/executions", {"crew_id": str(crew.pk), "inputs": {"topic": "AI"}}, format="json"
    ).json()
    owner_client.post("/api/v1/executions", {"agent_id": str(agent.pk), "description": "Do it"}, format="json")
    assert owner_client.get("/api/v1/executions").json()["total"] == 2
    assert owner_client.get("/api/v1/executions", {"kind": "crew"}).json()["total"] == 1
    assert owner_client.get("/api/v1/executions", {"agent_id": str(agent.pk)}).json()["total"] == 1
    assert owner_client.get("/api/v1/executions", {"status": "pending,running"}).json()["total"] == 2
    assert owner_client.get("/api/v1/executions", {"status": "COMPLETED"}).json()["total"] == 0
    history = owner_client.get(f"/api/v1/execution-history/{first['execution_id']}").json()
    assert [e["to_status"] for e in history["events"]] == ["PENDING"]
    assert owner_client.get("/api/v1/execution-history", {"limit": 1}).json()["has_more"] is True


def test_generate_name(owner_client):
    response = owner_client.post(
        "/api/v1/executions/generate-name",
        {"agents_yaml": AGENTS_YAML, "tasks_yaml": TASKS_YAML, "model": "gpt-4"},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["name"].startswith("{topic} Senior Researcher - Research Task - ")


def test_cancelling_a_pending_execution_ends_it_at_once_and_twice_is_a_conflict(owner_client, member):
    crew = make_crew(member)
    execution_id = owner_client.post(
        "/api/v1/executions", {"crew_id": str(crew.pk), "inputs": {"topic": "AI"}}, format="json"
    ).json()["execution_id"]
    response = owner_client.post(f"/api/v1/executions/{execution_id}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "CANCELLED"
    assert response.json()["cancel_requested"] is True
    assert_envelope(owner_client.post(f"/api/v1/executions/{execution_id}/cancel"), 409)
    events = list(ExecutionEvent.objects.filter(execution_id=execution_id).values_list("to_status", flat=True))
    assert events == ["PENDING", "CANCELLED"]


def test_logs_traces_and_status_of_a_run_that_has_not_started(owner_client, member):
    crew = make_crew(member)
    execution_id = owner_client.post(
        "/api/v1/executions", {"crew_id": str(crew.pk), "inputs": {"topic": "AI"}}, format="json"
    ).json()["execution_id"]
    logs = owner_client.get(f"/api/v1/execution-logs/{execution_id}").json()
    assert logs["items"] == [] and logs["status"] == "PENDING" and logs["last_seq"] == 0
    trace = owner_client.get(f"/api/v1/execution-trace/{execution_id}").json()
    assert trace["spans"] == [] and len(trace["trace_id"]) == 32
    assert trace["cost"] == "0.000000"  # a decimal string, as documented (and as on executions)
    by_trace = owner_client.get(f"/api/v1/traces/{trace['trace_id']}")
    assert by_trace.status_code == 200 and by_trace.json()["execution_id"] == execution_id
    listed = owner_client.get("/api/v1/traces").json()["items"][0]
    assert listed["trace_id"] == trace["trace_id"] and listed["cost"] == "0.000000"
    assert owner_client.get(f"/api/v1/tasks/{execution_id}/status").json()["cost"] == "0.000000"
    bad = owner_client.get(f"/api/v1/execution-logs/{execution_id}", {"after": "x"})
    assert assert_envelope(bad, 400)["errors"][0]["field"] == "after"


def test_runtime_status_and_agents(owner_client, member):
    agent = make_agent(member, config={"budget_limit_usd": 5})
    status = owner_client.get("/api/v1/runtime/status").json()
    assert status["total_agents"] == 1 and status["concurrency_limit"] == 5  # standard plan
    assert {b["state"] for b in status["circuit_breakers"]} <= {"closed"}
    agents = owner_client.get("/api/v1/runtime/agents").json()
    [row] = agents["items"]
    assert row["id"] == str(agent.pk) and row["circuit_breaker_state"] == "closed"
    # money is a decimal string, as the schema's RuntimeAgent says (DRF DecimalField, 6 places)
    assert row["budget_limit"] == "5.000000" and row["budget_used"] == "0.000000"


def test_usage_shape(owner_client, member):
    agent = make_agent(member)
    body = owner_client.get("/api/v1/usage", {"period": "week"}).json()
    assert set(body) >= {"total_executions", "total_cost_usd", "total_tokens", "by_agent", "by_day"}
    assert body["period"] == "week"
    per_agent = owner_client.get(f"/api/v1/usage/agents/{agent.pk}")
    assert per_agent.status_code == 200 and per_agent.json()["agent_id"] == str(agent.pk)


def test_a_client_chosen_stream_id_names_one_run_only(owner_client, member):
    agent = make_agent(member)
    body = {"prompt": "hi", "stream": False, "stream_id": "my-stream"}
    first = owner_client.post(f"/api/v1/agents/{agent.pk}/stream-prompt", body, format="json")
    assert first.status_code == 202 and first.json()["stream_id"] == "my-stream"
    again = owner_client.post(f"/api/v1/agents/{agent.pk}/stream-prompt", body, format="json")
    assert assert_envelope(again, 409)["errors"] == [{"field": "stream_id", "message": "already used"}]
    fresh = owner_client.post(
        f"/api/v1/agents/{agent.pk}/stream-prompt", {"prompt": "hi", "stream": False}, format="json"
    ).json()
    assert len(fresh["stream_id"]) == 32 and fresh["status"] == "PENDING"


def test_a_disabled_agent_does_not_run(owner_client, member):
    agent = make_agent(member, is_active=False)
    response = owner_client.post(f"/api/v1/agents/{agent.pk}/task", {"description": "x"}, format="json")
    assert assert_envelope(response, 409, "AGENT_005")["errors"] == [{"field": "agent", "message": "disabled"}]


def test_an_agent_task_of_the_longest_names_fits_the_run(owner_client, member):
    """A 200-character agent name and task name made a run name over 300 characters (a 500); a model
    name over 200 characters is a 400 (the document says so), not a 500."""
    agent = make_agent(member, name="a" * 200)
    accepted = owner_client.post(
        f"/api/v1/agents/{agent.pk}/task", {"description": "d", "name": "n" * 200}, format="json"
    )
    assert accepted.status_code == 202, accepted.content
    assert len(Execution.objects.get(pk=accepted.json()["task_id"]).run_name) == 300
    assert_envelope(
        owner_client.post(f"/api/v1/agents/{agent.pk}/task", {"description": "d", "model": "m" * 201}, format="json"),
        400,
    )
