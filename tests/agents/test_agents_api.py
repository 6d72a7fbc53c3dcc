"""Agents: CRUD, versions, config parsing errors, role matrix, status/restart/logs/memory/test."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.agents.models import Agent, AgentMemory
from apps.audit.models import AuditEvent
from tests.helpers import assert_envelope

pytestmark = pytest.mark.django_db

SEED_001 = {
    "name": "Research Agent",
    "role": "Senior Researcher",
    "goal": "Conduct thorough research",
    "backstory": "You are an experienced researcher",
    "llm": "gpt-4",
    "tools": ["calculator"],
    "allow_delegation": False,
    "verbose": True,
}


def _create(client, **overrides):
    response = client.post("/api/v1/agents", {**SEED_001, **overrides}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_create_list_get_update_delete(owner_client, member):
    body = _create(owner_client)
    assert body["agent_number"] == 1 and body["version"] == 1 and body["status"] == "idle"
    assert body["tools"] == ["calculator"] and body["llm"] == "gpt-4"
    second = _create(owner_client, name="Second")
    assert second["agent_number"] == 2

    listed = owner_client.get("/api/v1/agents?limit=1").json()
    assert listed["total"] == 2 and listed["has_more"] is True and len(listed["items"]) == 1

    assert owner_client.get(f"/api/agents/{body['id']}").json()["name"] == "Research Agent"  # /api/ alias
    put = owner_client.put(f"/api/v1/agents/{body['id']}", {"goal": "Enhanced research"}, format="json")
    assert put.status_code == 200 and put.json()["goal"] == "Enhanced research" and put.json()["version"] == 2
    patch = owner_client.patch(f"/api/v1/agents/{body['id']}", {"verbose": False}, format="json")
    assert patch.json()["version"] == 3 and patch.json()["name"] == "Research Agent"
    assert AuditEvent.objects.filter(action="agent.update", object_id=body["id"]).count() == 2

    assert owner_client.delete(f"/api/v1/agents/{body['id']}").status_code == 204
    assert_envelope(owner_client.get(f"/api/v1/agents/{body['id']}"), 404)


def test_versions_are_kept_and_listable(owner_client):
    agent = _create(owner_client)
    owner_client.patch(f"/api/v1/agents/{agent['id']}", {"goal": "v2"}, format="json")
    owner_client.patch(f"/api/v1/agents/{agent['id']}", {"goal": "v3"}, format="json")
    unchanged = owner_client.patch(f"/api/v1/agents/{agent['id']}", {"goal": "v3"}, format="json").json()
    assert unchanged["version"] == 3  # no config change, no new version
    versions = owner_client.get(f"/api/v1/agents/{agent['id']}/versions").json()
    assert [v["version"] for v in versions["items"]] == [3, 2, 1]
    assert [v["snapshot"]["goal"] for v in versions["items"]] == ["v3", "v2", "Conduct thorough research"]
    assert versions["items"][0]["changed_fields"] == ["goal"]


def test_seed_003_create_from_yaml(owner_client):
    yaml_text = "role: Analyst\ngoal: Count things\nllm: builtin\ntools: [calculator, current_time]\n"
    body = owner_client.post(
        "/api/v1/agents",
        {
            "name": "From YAML",
            "config_yaml": yaml_text,
            "agent_type": "assistant",
            "description": "d",
            "status": "draft",
        },
        format="json",
    ).json()
    assert body["role"] == "Analyst" and body["tools"] == ["calculator", "current_time"] and body["status"] == "draft"


def test_unknown_tool_is_a_400_naming_it(owner_client):
    body = assert_envelope(
        owner_client.post("/api/v1/agents", {**SEED_001, "tools": ["search_tool", "calculator"]}, format="json"), 400
    )
    assert body["errors"][0]["field"] == "tools" and "'search_tool'" in body["errors"][0]["message"]
    yaml_body = assert_envelope(
        owner_client.post("/api/v1/agents", {"name": "y", "config_yaml": "tools: [browser_tool]\n"}, format="json"), 400
    )
    assert "'browser_tool'" in yaml_body["detail"]


def test_invalid_yaml_and_json_config_name_the_line(owner_client):
    bad_yaml = "role: a\ngoal: b\ntools: [calculator\nverbose: true\n"
    body = assert_envelope(
        owner_client.post("/api/v1/agents", {"name": "x", "config_yaml": bad_yaml}, format="json"), 400
    )
    assert body["errors"][0]["field"] == "config_yaml" and "line 4" in body["errors"][0]["message"]
    bad_json = '{\n  "temperature": 0.2,\n  "max_tokens": \n}'
    body = assert_envelope(owner_client.post("/api/v1/agents", {"name": "x", "config": bad_json}, format="json"), 400)
    assert body["errors"][0]["field"] == "config" and "line 4" in body["errors"][0]["message"]
    ok = owner_client.post("/api/v1/agents", {"name": "x", "config": '{"temperature": 0.2}'}, format="json")
    assert ok.status_code == 201 and ok.json()["config"] == {"temperature": 0.2}


def test_unknown_fields_and_engine_statuses_are_refused(owner_client):
    assert_envelope(owner_client.post("/api/v1/agents", {"name": "x", "colour": "red"}, format="json"), 400)
    agent = _create(owner_client)
    body = assert_envelope(
        owner_client.patch(f"/api/v1/agents/{agent['id']}", {"status": "executing"}, format="json"), 400
    )
    assert body["errors"][0]["field"] == "status"


@pytest.mark.parametrize(
    "role, create, restart",
    [
        ("owner", 201, 200),
        ("admin", 201, 200),
        ("developer", 201, 200),
        ("user", 201, 200),
        ("agent", 403, 403),
    ],
)
def test_role_matrix_create_and_restart(make_member, client_for, role, create, restart):
    owner = make_member("owner")
    agent = _create(client_for(owner))
    client = client_for(make_member(role, organization=owner.organization))
    assert client.post("/api/v1/agents", {"name": "by " + role}, format="json").status_code == create
    assert client.post(f"/api/v1/agents/{agent['id']}/restart").status_code == restart
    assert client.get(f"/api/v1/agents/{agent['id']}/logs").status_code == 200  # everyone views logs


def test_status_restart_and_logs(owner_client, member):
    agent = _create(owner_client)
    Agent.objects.filter(pk=agent["id"]).update(status="error", last_error="boom")
    status = owner_client.get(f"/api/v1/agents/{agent['id']}/status").json()
    assert status["status"] == "error" and status["detail"]["state"] == "error"
    assert status["detail"]["last_error"] == "boom" and status["online"] is False
    restarted = owner_client.post(f"/api/v1/agents/{agent['id']}/restart").json()
    assert restarted["status"] == "idle" and restarted["detail"]["last_error"] is None
    logs = owner_client.get(f"/api/v1/agents/{agent['id']}/logs").json()
    types = [e["type"] for e in logs["items"]]
    assert types[0] == "agent.created" and "agent.restarted" in types and "agent.status_changed" in types
    after = logs["items"][0]["seq"]
    later = owner_client.get(f"/api/v1/agents/{agent['id']}/logs?after={after}").json()
    assert all(e["seq"] > after for e in later["items"]) and later["total"] == len(types) - 1


def test_disabling_shows_disabled_state(owner_client):
    agent = _create(owner_client)
    body = owner_client.patch(f"/api/v1/agents/{agent['id']}", {"is_active": False}, format="json").json()
    assert body["status"] == "disabled"
    assert owner_client.get(f"/api/v1/agents/{agent['id']}/status").json()["detail"]["state"] == "disabled"
    assert_envelope(
        owner_client.post(f"/api/v1/agents/{agent['id']}/test", {"prompt": "hi"}, format="json"), 409, code="AGENT_005"
    )


def test_memory_typed_tagged_ttl_and_queries(owner_client):
    agent = _create(owner_client)
    url = f"/api/v1/agents/{agent['id']}/memory"
    a = owner_client.post(url, {"memory_type": "fact", "content": {"k": 1}, "tags": ["x", "y"]}, format="json")
    assert a.status_code == 201 and a.json()["expires_at"] is None
    owner_client.post(url, {"type": "note", "content": "plain text", "tags": ["y"]}, format="json")
    expiring = owner_client.post(url, {"memory_type": "fact", "content": "soon gone", "ttl": 60}, format="json").json()
    assert expiring["expires_at"] is not None

    assert owner_client.get(url).json()["total"] == 3
    assert {
        m["content"] if isinstance(m["content"], str) else "obj"
        for m in owner_client.get(f"{url}?type=fact").json()["items"]
    } == {"obj", "soon gone"}
    assert owner_client.get(f"{url}?tags=x,y").json()["total"] == 1
    assert owner_client.get(f"{url}?tags=y").json()["total"] == 2

    AgentMemory.objects.filter(pk=expiring["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert expiring["id"] not in [m["id"] for m in owner_client.get(url).json()["items"]]

    future = (timezone.now() + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    assert owner_client.get(url, {"since": future}).json()["total"] == 0
    assert_envelope(owner_client.get(url, {"since": "yesterday"}), 400)


def test_test_runs_one_prompt_on_builtin(owner_client, member, celery_worker_process):
    agent = _create(owner_client, llm="builtin", tools=[])
    response = owner_client.post(f"/api/v1/agents/{agent['id']}/test", {"prompt": "hello world"}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["output"] == "Builtin reply to: hello world"
    assert (
        body["tokens"]["output"] == 6 and body["tokens"]["total"] == body["tokens"]["input"] + 6
    )  # Builtin reply to : hello world
    # cost: a decimal string with six places, as documented (it left as the JSON number 0.0 before)
    assert body["cost"] == "0.000000" and body["latency_ms"] >= 0 and body["provider_type"] == "builtin"
    # the agent's run counters are written just after the run's end (its caller is answered first)
    deadline = time.monotonic() + 10
    while (refreshed := owner_client.get(f"/api/v1/agents/{agent['id']}").json())[
        "execution_count"
    ] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert refreshed["execution_count"] == 1 and refreshed["last_execution"] is not None


def test_test_calls_the_agents_tools(owner_client, celery_worker_process):
    agent = _create(owner_client, llm="builtin", tools=["calculator"])
    body = owner_client.post(
        f"/api/v1/agents/{agent['id']}/test", {"prompt": '/tool calculator {"expression": "6*7"}'}, format="json"
    ).json()
    assert body["tool_calls"][0]["name"] == "calculator" and body["tool_calls"][0]["ok"] is True
    assert '"result": 42' in body["output"]


def test_unconfigured_model_falls_back_to_builtin_in_embedded_mode(owner_client, celery_worker_process):
    agent = _create(owner_client, llm="gpt-4", tools=[])
    body = owner_client.post(f"/api/v1/agents/{agent['id']}/test", {"prompt": "hi"}, format="json").json()
    assert body["provider_type"] == "builtin" and "gpt-4" in body["note"]


def test_unconfigured_model_fails_clearly_without_fallback(owner_client, settings):
    settings.KAI_LLM_FALLBACK = ""
    agent = _create(owner_client, llm="gpt-4", tools=[])
    body = assert_envelope(
        owner_client.post(f"/api/v1/agents/{agent['id']}/test", {"prompt": "hi"}, format="json"), 422, code="AGENT_004"
    )
    assert "gpt-4" in body["detail"]


def test_list_query_count_is_constant(owner_client, member, django_assert_max_num_queries):
    from apps.agents.services import agent_create

    for i in range(30):
        agent_create(
            organization=member.organization,
            actor=member.user,
            data={"name": f"a{i}", "tools": ["calculator", "current_time"]},
        )
    with django_assert_max_num_queries(6):
        response = owner_client.get("/api/v1/agents?limit=100")
    assert response.status_code == 200 and response.json()["total"] == 30


def test_other_organizations_agents_are_404(make_member, client_for):
    a, b = make_member(), make_member()
    agent = _create(client_for(a))
    for path in ("", "/status", "/logs", "/memory", "/versions"):
        assert_envelope(client_for(b).get(f"/api/v1/agents/{agent['id']}{path}"), 404)
    assert_envelope(client_for(b).post(f"/api/v1/agents/{agent['id']}/test", {"prompt": "x"}, format="json"), 404)


def test_list_items_match_the_detail_answer_and_paginate(owner_client):
    created = [_create(owner_client, name=f"n{i}") for i in range(3)]
    listed = owner_client.get("/api/v1/agents").json()
    detail = owner_client.get(f"/api/v1/agents/{created[-1]['id']}").json()
    assert listed["items"][0] == detail  # newest first, same shape and values as the detail route
    page = owner_client.get("/api/v1/agents?limit=2&offset=2").json()
    assert page["total"] == 3 and len(page["items"]) == 1 and page["has_more"] is False
    past = owner_client.get("/api/v1/agents?limit=2&offset=10").json()
    assert past["total"] == 3 and past["items"] == []
    assert owner_client.get("/api/v1/agents?status=draft").json()["total"] == 0
