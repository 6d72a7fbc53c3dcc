"""Generation of agents, tasks and crews through the LLM layer (builtin: deterministic, schema-valid)."""

import pytest

from apps.crews import generation
from tests.helpers import assert_envelope

pytestmark = pytest.mark.django_db


def test_agent_generation_is_deterministic_and_schema_valid(owner_client):
    body = {
        "description": "Create a customer service agent that can handle inquiries and escalate complex issues",
        "model": "gpt-4",
    }
    first = owner_client.post("/api/v1/agent-generation/generate", body, format="json")
    assert first.status_code == 200, first.content
    agent = first.json()["agent"]
    assert agent["name"] == "Customer Service Agent" and agent["role"] == "Customer Service Specialist"
    assert agent["goal"] == "Can handle inquiries and escalate complex issues"
    assert not generation.validation_errors("agent", agent)
    assert owner_client.post("/api/v1/agent-generation/generate", body, format="json").json()["agent"] == agent
    # the generated agent is accepted by the agents API as it is
    created = owner_client.post("/api/v1/agents", agent, format="json")
    assert created.status_code == 201, created.content


def test_task_generation(owner_client):
    response = owner_client.post(
        "/api/v1/task-generation/generate",
        {"description": "Create a task for analyzing customer feedback data"},
        format="json",
    )
    task = response.json()["task"]
    assert task["name"] == "Analyzing Customer Feedback Data"
    assert task["expected_output"].startswith("A concise, structured report on analyzing customer feedback data")
    created = owner_client.post("/api/v1/tasks", {k: v for k, v in task.items()}, format="json")
    assert created.status_code == 201, created.content


def test_crew_generation_yields_a_crew_that_validates_and_saves(owner_client):
    response = owner_client.post(
        "/api/v1/crew-generation/generate",
        {"description": "Create a crew for content marketing including research, writing, and review"},
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert [a["key"] for a in body["agents"]] == ["research_agent", "writing_agent", "review_agent"]
    assert [t["agent"] for t in body["tasks"]] == ["research_agent", "writing_agent", "review_agent"]
    crew = body["crew"]
    assert crew["name"] == "Content Marketing Crew" and crew["process"] == "sequential"
    debug = owner_client.post(
        "/api/v1/crews/debug", {"agents_yaml": crew["agents_yaml"], "tasks_yaml": crew["tasks_yaml"]}, format="json"
    ).json()
    assert debug["valid"] is True, debug["errors"]
    assert owner_client.post("/api/v1/crews", crew, format="json").status_code == 201


def test_invalid_model_output_is_retried_then_reported(owner_client, monkeypatch):
    calls = []

    def flaky(description, available):
        calls.append(1)
        draft = generation.draft_agent(description, available)
        return {**draft, "role": ""} if len(calls) == 1 else draft

    monkeypatch.setitem(generation.DRAFTS, "agent", flaky)
    ok = owner_client.post("/api/v1/agent-generation/generate", {"description": "a research agent"}, format="json")
    assert ok.status_code == 200 and len(calls) == 2  # the first answer was refused and asked again

    monkeypatch.setitem(generation.DRAFTS, "agent", lambda d, a: {"name": "x", "tools": ["no_such_tool"]})
    bad = owner_client.post("/api/v1/agent-generation/generate", {"description": "a research agent"}, format="json")
    body = assert_envelope(bad, 422, "AGENT_002")
    assert body["type"] == "invalid_llm_output"
    assert body["detail"].startswith("The model did not produce a valid agent in 3 attempts")
    messages = {e["message"] for e in body["errors"]}
    assert "$.tools: unknown tool 'no_such_tool'" in messages
    assert "$: 'role' is a required property" in messages


def test_generation_refuses_unknown_fields_and_needs_a_description(owner_client):
    assert_envelope(owner_client.post("/api/v1/crew-generation/generate", {"model": "gpt-4"}, format="json"), 400)
    response = owner_client.post("/api/v1/crew-generation/generate", {"description": "x", "temp": 1}, format="json")
    assert assert_envelope(response, 400)["errors"][0]["field"] == "temp"


@pytest.mark.parametrize("kind", ["agent", "task", "crew"])
def test_a_description_of_the_largest_size_still_yields_a_valid_object(owner_client, kind):
    """The builtin model's draft is cut to the schema's lengths (a 4,000-character description made
    a backstory longer than 4,000 characters: a 422 for a request the document allows)."""
    response = owner_client.post(f"/api/v1/{kind}-generation/generate", {"description": "0" * 4000}, format="json")
    assert response.status_code == 200, response.content[:300]
