"""Prompt templates (render), agent and orchestration templates (official, category, use)."""

import pytest

from tests.helpers import assert_envelope

pytestmark = pytest.mark.django_db


def test_seed_001_prompt_template_render(owner_client):
    created = owner_client.post(
        "/api/v1/templates",
        {
            "name": "My Research Template",
            "template": "You are a research agent. Your task is to {task_description}. Please provide {expected_output}.",
            "variables": ["task_description", "expected_output"],
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    url = f"/api/v1/templates/{created.json()['id']}/render"
    rendered = owner_client.post(
        url, {"variables": {"task_description": "study bees", "expected_output": "a report"}}, format="json"
    ).json()
    assert rendered["rendered"] == "You are a research agent. Your task is to study bees. Please provide a report."
    body = assert_envelope(owner_client.post(url, {"variables": {"task_description": "x"}}, format="json"), 400)
    assert body["errors"][0]["field"] == "variables.expected_output"


def test_template_variables_are_checked(owner_client):
    inferred = owner_client.post(
        "/api/v1/templates", {"name": "t", "template": "Hi {name}, {{literal}}"}, format="json"
    )
    assert inferred.json()["variables"] == ["name"]
    rendered = owner_client.post(
        f"/api/v1/templates/{inferred.json()['id']}/render", {"variables": {"name": "Ann"}}, format="json"
    ).json()["rendered"]
    assert rendered == "Hi Ann, {literal}"
    assert_envelope(
        owner_client.post("/api/v1/templates", {"name": "u", "template": "{a}", "variables": []}, format="json"), 400
    )
    assert_envelope(
        owner_client.post("/api/v1/templates", {"name": "v", "template": "{a.__class__}"}, format="json"), 400
    )


def test_official_templates_are_shipped_read_only_and_filterable(owner_client):
    agents = owner_client.get("/api/v1/templates/agents").json()
    assert agents["total"] >= 4 and all(t["is_official"] for t in agents["items"])
    research = owner_client.get("/api/v1/templates/agents?category=research").json()["items"]
    assert [t["name"] for t in research] == ["Research assistant"]
    assert_envelope(
        owner_client.patch(f"/api/v1/templates/agents/{research[0]['id']}", {"name": "x"}, format="json"), 409
    )
    assert owner_client.get("/api/v1/templates/orchestrations").json()["total"] >= 3
    assert owner_client.get("/api/v1/templates?is_official=true").json()["total"] >= 2


def test_use_agent_template_creates_the_agent(owner_client, celery_worker_process):
    template = owner_client.get("/api/v1/templates/agents?category=analysis").json()["items"][0]
    created = owner_client.post(f"/api/v1/templates/agents/{template['id']}/use", {"name": "My analyst"}, format="json")
    assert created.status_code == 201, created.content
    agent = created.json()
    assert agent["name"] == "My analyst" and agent["role"] == "Data Analyst" and agent["tools"] == ["calculator"]
    assert owner_client.post(f"/api/v1/agents/{agent['id']}/test", {"prompt": "hi"}, format="json").status_code == 200


def test_org_agent_template_with_unknown_tool_is_refused(owner_client):
    body = assert_envelope(
        owner_client.post(
            "/api/v1/templates/agents",
            {"name": "t", "category": "x", "config_yaml": "role: r\ntools: [browser_tool]\n"},
            format="json",
        ),
        400,
    )
    assert body["errors"][0]["field"] == "config_yaml" and "browser_tool" in body["errors"][0]["message"]


def test_use_orchestration_template(owner_client):
    from django.apps import apps

    template = owner_client.get("/api/v1/templates/orchestrations?category=content").json()["items"][0]
    response = owner_client.post(
        f"/api/v1/templates/orchestrations/{template['id']}/use", {"name": "Blog"}, format="json"
    )
    body = response.json()
    assert body["orchestration"]["pattern"] == "sequential" and body["orchestration"]["name"] == "Blog"
    assert len(body["orchestration"]["config"]["agents"]) == 2
    if apps.is_installed("apps.crews"):
        assert response.status_code == 201 and body["created"] is True and body["orchestration_id"]
    else:
        assert response.status_code == 200 and body["created"] is False
