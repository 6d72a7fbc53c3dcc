"""Tools: registry, toggle, schemas, organization tools, built-ins, and the SSRF guard."""

import pytest

from apps.agents.models import Tool
from apps.agents.tools import ToolContext, ToolError, run_tool
from kai_platform.llm.netguard import AllowList, BlockedAddress, check_url
from tests.helpers import assert_envelope

pytestmark = pytest.mark.django_db
BUILTINS = {
    "calculator",
    "current_time",
    "file_reader",
    "memory_store",
    "memory_query",
    "http_request",
    "knowledge_search",
    "knowledge_base_tool",
}  # the last two: apps.knowledge


def test_builtins_listed_toggled_and_schema(owner_client):
    items = owner_client.get("/api/v1/tools?limit=100").json()["items"]
    assert {t["name"] for t in items} == BUILTINS
    http = next(t for t in items if t["name"] == "http_request")
    toggled = owner_client.patch(f"/api/v1/tools/{http['id']}/toggle-enabled").json()
    assert toggled["enabled"] is False
    assert "http_request" not in {t["name"] for t in owner_client.get("/api/v1/tools/enabled").json()["items"]}
    schema = owner_client.get("/api/v1/tools/configurations/http_request/schema").json()
    assert "timeout_seconds" in schema["config_schema"]["properties"] and schema["parameters_schema"]["required"] == [
        "url"
    ]
    assert_envelope(owner_client.get("/api/v1/tools/configurations/nope/schema"), 404)
    assert_envelope(owner_client.delete(f"/api/v1/tools/{http['id']}"), 409)


def test_configuration_is_validated_against_the_schema(owner_client):
    http = next(t for t in owner_client.get("/api/v1/tools?limit=100").json()["items"] if t["name"] == "http_request")
    body = assert_envelope(
        owner_client.patch(
            f"/api/v1/tools/{http['id']}", {"configuration": {"timeout_seconds": "fast"}}, format="json"
        ),
        400,
    )
    assert body["errors"][0]["field"] == "configuration" and "$.timeout_seconds" in body["errors"][0]["message"]


def test_seed_001_custom_tool(owner_client):
    body = {
        "name": "Custom Search Tool",
        "description": "db search",
        "tool_type": "custom",
        "configuration": {"api_endpoint": "https://api.example.com", "parameters": {}},
        "enabled": True,
    }
    created = owner_client.post("/api/v1/tools", body, format="json")
    assert created.status_code == 201, created.content
    assert owner_client.get("/api/v1/tools/configurations/Custom Search Tool/schema").status_code == 200
    missing = assert_envelope(
        owner_client.post("/api/v1/tools", {"name": "x", "configuration": {}}, format="json"), 400
    )
    assert "api_endpoint" in missing["errors"][0]["message"]
    private = assert_envelope(
        owner_client.post(
            "/api/v1/tools", {"name": "y", "configuration": {"api_endpoint": "http://192.168.1.10/hook"}}, format="json"
        ),
        400,
    )
    assert "private" in private["detail"]
    # the new tool can now be given to agents
    assert (
        owner_client.post("/api/v1/agents", {"name": "a", "tools": ["Custom Search Tool"]}, format="json").status_code
        == 201
    )


def _tool(member, name):
    return Tool.objects.for_org(member.organization).get(name=name)


def test_calculator_and_time(member):
    ctx = ToolContext(organization=member.organization)
    assert run_tool(_tool(member, "calculator"), {"expression": "2**10 + sqrt(16)"}, ctx)["result"] == 1028
    for bad in ("__import__('os')", "2**99999", "1/0", "[1,2]"):
        with pytest.raises(ToolError):
            run_tool(_tool(member, "calculator"), {"expression": bad}, ctx)
    assert run_tool(_tool(member, "current_time"), {"timezone": "Europe/Paris"}, ctx)["timezone"] == "Europe/Paris"
    with pytest.raises(ToolError):
        run_tool(_tool(member, "current_time"), {"timezone": "Mars/Olympus"}, ctx)
    with pytest.raises(ToolError, match="invalid arguments"):
        run_tool(_tool(member, "calculator"), {"nope": 1}, ctx)


def test_memory_tools(member):
    from apps.agents.services import agent_create

    agent = agent_create(organization=member.organization, actor=member.user, data={"name": "m"})
    ctx = ToolContext(organization=member.organization, agent=agent, actor=member.user)
    run_tool(_tool(member, "memory_store"), {"content": "likes tea", "tags": ["pref"]}, ctx)
    found = run_tool(_tool(member, "memory_query"), {"tags": ["pref"]}, ctx)["memories"]
    assert [m["content"] for m in found] == ["likes tea"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://localhost:8000/x",
        "http://10.1.2.3/",
        "http://[::1]/",
        "http://169.254.169.254/latest/meta-data",
        "http://0.0.0.0/",
        "ftp://example.com/",
        "http://[::ffff:127.0.0.1]/",
        "http://metadata.google.internal/",
    ],
)
def test_guard_refuses_private_addresses(url):
    with pytest.raises(BlockedAddress):
        check_url(url)


def test_guard_allow_list_admits_named_hosts_and_networks_but_never_metadata():
    check_url("http://127.0.0.1:9/", AllowList.from_entries(["127.0.0.0/8"]))
    check_url("http://localhost:9/", AllowList.from_entries(["localhost"]))
    with pytest.raises(BlockedAddress):
        check_url("http://169.254.169.254/", AllowList.from_entries(["169.254.0.0/16"]))


def test_http_request_refuses_loopback_then_follows_the_allow_list(member, llm_server):
    ctx = ToolContext(organization=member.organization)
    tool = _tool(member, "http_request")
    with pytest.raises(ToolError, match="refused"):
        run_tool(tool, {"url": f"{llm_server.url}/hello"}, ctx)
    member.organization.settings = {"network_allowlist": ["127.0.0.1"]}
    member.organization.save()
    result = run_tool(tool, {"url": f"{llm_server.url}/hello"}, ToolContext(organization=member.organization))
    assert result["status"] == 200 and '"/hello"' in result["body"]


def test_http_request_checks_redirects(member, llm_server):
    """A public-looking first hop that redirects to a refused address is stopped at the redirect."""
    member.organization.settings = {"network_allowlist": [f"127.0.0.1:{llm_server.port}", "localhost"]}
    member.organization.save()
    # allow-list names the host `localhost` only; the redirect goes to 127.0.0.1 which is not listed
    url = f"http://localhost:{llm_server.port}/redirect-to-loopback"
    with pytest.raises(ToolError, match="refused"):
        run_tool(_tool(member, "http_request"), {"url": url}, ToolContext(organization=member.organization))


def test_http_request_method_is_limited_by_configuration(member):
    with pytest.raises(ToolError, match="not allowed"):
        run_tool(
            _tool(member, "http_request"),
            {"url": "https://example.com", "method": "DELETE"},
            ToolContext(organization=member.organization),
        )


def test_configuration_schema_is_tenant_scoped(make_member, client_for):
    a, b = make_member(), make_member()
    client_for(a).post(
        "/api/v1/tools",
        {"name": "private-hook", "configuration": {"api_endpoint": "https://hooks.example.com"}},
        format="json",
    )
    assert client_for(a).get("/api/v1/tools/configurations/private-hook/schema").status_code == 200
    assert_envelope(client_for(b).get("/api/v1/tools/configurations/private-hook/schema"), 404)
