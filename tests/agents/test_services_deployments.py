"""Services registry (discover, heartbeats, refresh) and deployments (deploy, invoke, stop revokes)."""

import pytest
from rest_framework.test import APIClient

from tests.helpers import assert_envelope

pytestmark = pytest.mark.django_db


def _agent(client, name="Svc"):
    return client.post("/api/v1/agents", {"name": name, "llm": "builtin"}, format="json").json()


def test_discover_registers_agents_tools_providers_and_endpoints(owner_client, member):
    agent = _agent(owner_client)
    member.organization.settings = {"service_endpoints": [{"name": "search", "url": "https://search.example.com"}]}
    member.organization.save()
    counts = owner_client.post("/api/v1/services/discover").json()
    # the 8 builtin tools: calculator, current_time, file_reader, memory_store, memory_query, http_request and the
    # knowledge app's knowledge_search / knowledge_base_tool
    assert counts["agents"] == 1 and counts["tools"] == 8 and counts["providers"] == 1 and counts["endpoints"] == 1
    tools = {s["name"] for s in owner_client.get("/api/v1/services?service_type=tool&page_size=50").json()["items"]}
    assert {"calculator", "http_request", "knowledge_search", "knowledge_base_tool"} <= tools
    again = owner_client.post("/api/v1/services/discover").json()
    assert again["created"] == 0  # idempotent
    services = owner_client.get("/api/v1/services?service_type=agent").json()["items"]
    assert (
        services[0]["ref_id"] == agent["id"] and services[0]["status"] == "offline" and services[0]["online"] is False
    )


def test_heartbeat_makes_an_agent_online_and_refresh_records_it(owner_client):
    agent = _agent(owner_client)
    owner_client.post("/api/v1/services/discover")
    service = owner_client.get("/api/v1/services?service_type=agent").json()["items"][0]
    beat = owner_client.post("/api/v1/services/heartbeat", {"type": "heartbeat", "agent_id": "kai-001"}, format="json")
    assert beat.status_code == 200 and beat.json()["id"] == agent["id"]
    listed = owner_client.get("/api/v1/services?service_type=agent").json()["items"][0]
    assert listed["online"] is True and listed["status"] == "online" and listed["last_seen"]
    refreshed = owner_client.post(f"/api/v1/services/{service['id']}/refresh").json()
    assert refreshed["status"] == "online"
    assert owner_client.get(f"/api/v1/agents/{agent['id']}/status").json()["online"] is True


def test_create_endpoint_service_and_refresh_probes_it(owner_client, member, llm_server):
    member.organization.settings = {"network_allowlist": ["127.0.0.1"]}
    member.organization.save()
    created = owner_client.post(
        "/api/v1/services",
        {"name": "local", "service_type": "endpoint", "endpoint": f"{llm_server.url}/health"},
        format="json",
    )
    assert created.status_code == 201, created.content
    refreshed = owner_client.post(f"/api/v1/services/{created.json()['id']}/refresh").json()
    assert refreshed["status"] == "online" and refreshed["response_time_ms"] is not None
    assert_envelope(
        owner_client.post("/api/v1/services", {"name": "meta", "endpoint": "http://169.254.169.254/"}, format="json"),
        400,
    )


def test_deploy_invoke_and_stop_revokes(owner_client, celery_worker_process):
    agent = _agent(owner_client)
    deployed = owner_client.post("/api/v1/deploy", {"agent_id": agent["id"], "channels": ["api"]}, format="json")
    assert deployed.status_code == 201, deployed.content
    body = deployed.json()
    assert body["key"].startswith("kdep_") and body["api_url"].endswith(f"/deployments/{body['id']}/invoke")
    assert "key" not in owner_client.get(f"/api/v1/deployments/{body['id']}").json()

    caller = APIClient()
    caller.credentials(HTTP_AUTHORIZATION=f"Bearer {body['key']}")
    invoked = caller.post(f"/api/v1/deployments/{body['id']}/invoke", {"prompt": "ping"}, format="json")
    assert invoked.status_code == 200 and invoked.json()["output"] == "Builtin reply to: ping"
    assert_envelope(APIClient().post(f"/api/v1/deployments/{body['id']}/invoke", {"prompt": "x"}, format="json"), 401)

    stopped = owner_client.delete(f"/api/v1/deployments/{body['id']}")
    assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
    assert_envelope(caller.post(f"/api/v1/deployments/{body['id']}/invoke", {"prompt": "ping"}, format="json"), 401)
    assert owner_client.get("/api/v1/deployments").json()["items"][0]["invocation_count"] == 1


def test_deploy_needs_an_agent_of_the_organization(make_member, client_for):
    a, b = make_member(), make_member()
    agent = _agent(client_for(a))
    assert_envelope(client_for(b).post("/api/v1/deploy", {"agent_id": agent["id"]}, format="json"), 404)
    assert_envelope(
        client_for(make_member("user", organization=a.organization)).post(
            "/api/v1/deploy", {"agent_id": agent["id"]}, format="json"
        ),
        403,
    )
