"""A deployment served as an MCP server: the real daphne process, the ``mcp`` package's client
(streamable HTTP + ClientSession), the deployment key, the builtin LLM provider."""

from __future__ import annotations

import anyio
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from apps.agents.models import Deployment
from apps.agents.services import agent_create, deployment_create, deployment_stop
from apps.audit.models import AuditEvent

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def live_server_process(shared_live_server):
    """A real daphne (the xdist worker's shared one: it reads the same test database every test writes to)."""
    return shared_live_server


async def _session_calls(url: str, key: str | None, calls):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0)) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await calls(session)


def test_mcp_client_lists_and_calls_the_deployed_agent(
    transactional_db, make_member, live_server_process, celery_worker_process
):
    owner = make_member("owner")
    agent = agent_create(
        organization=owner.organization,
        actor=owner.user,
        data={"name": "Support Bot", "goal": "Answer support questions"},
    )
    deployment, key = deployment_create(
        organization=owner.organization, actor=owner.user, agent=agent, name="Support Bot", channels=["api", "mcp"]
    )
    url = f"{live_server_process.url}/mcp/deployments/{deployment.pk}/"

    async def calls(session):
        tools = await session.list_tools()
        result = await session.call_tool("Support_Bot", {"prompt": "How do I reset my password?"})
        wrong = await session.call_tool("Support_Bot", {"prompt": ""})
        return tools, result, wrong

    tools, result, wrong = anyio.run(_session_calls, url, key, calls)
    assert [t.name for t in tools.tools] == ["Support_Bot"]
    assert tools.tools[0].input_schema["required"] == ["prompt"]
    assert result.is_error is False
    assert result.content[0].text and result.content[0].text == result.structured_content["output"]
    assert result.structured_content["provider_type"] == "builtin"
    assert result.structured_content["tokens"]["total"] > 0
    assert wrong.is_error is True

    deployment.refresh_from_db()
    assert deployment.invocation_count == 1
    audit = AuditEvent.objects.get(organization=owner.organization, action="deployment.invoke")
    assert audit.object_id == str(deployment.pk) and audit.after["channel"] == "mcp"


def test_mcp_endpoint_needs_the_deployments_own_key(transactional_db, make_member, live_server_process):
    ann, bob = make_member("owner"), make_member("owner")
    ann_agent = agent_create(organization=ann.organization, actor=ann.user, data={"name": "Ann"})
    bob_agent = agent_create(organization=bob.organization, actor=bob.user, data={"name": "Bob"})
    ann_dep, ann_key = deployment_create(
        organization=ann.organization, actor=ann.user, agent=ann_agent, name="ann", channels=["mcp"]
    )
    bob_dep, bob_key = deployment_create(
        organization=bob.organization, actor=bob.user, agent=bob_agent, name="bob", channels=["mcp"]
    )
    api_only, api_key = deployment_create(
        organization=ann.organization, actor=ann.user, agent=ann_agent, name="api-only", channels=["api"]
    )
    base = live_server_process.url
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    with httpx2.Client(timeout=10) as http:

        def post(dep, key):
            auth = {"Authorization": f"Bearer {key}"} if key else {}
            return http.post(f"{base}/mcp/deployments/{dep.pk}/", json=body, headers={**headers, **auth})

        assert post(ann_dep, None).status_code == 401
        assert post(ann_dep, "kdep_nope_nope").status_code == 401
        # another organization's deployment key does not open this deployment, nor the other way round
        assert post(ann_dep, bob_key).status_code == 401
        assert post(bob_dep, ann_key).status_code == 401
        assert post(api_only, api_key).status_code == 404
        assert http.post(f"{base}/mcp/deployments/not-a-uuid/", json=body, headers=headers).status_code == 404
        listed = post(ann_dep, ann_key)
        assert listed.status_code == 200, listed.text
        assert [t["name"] for t in listed.json()["result"]["tools"]] == ["ann"]
        # stopping the deployment revokes the key at once
        deployment_stop(deployment=Deployment.objects.get(pk=ann_dep.pk), actor=ann.user)
        assert post(ann_dep, ann_key).status_code == 401


def test_a_deployed_orchestration_is_a_tool_whose_run_goes_to_the_worker(
    transactional_db, make_member, live_server_process, celery_worker_process
):
    from apps.crews.services import orchestration_create
    from apps.runs.models import Execution

    owner = make_member("owner")
    researcher = agent_create(organization=owner.organization, actor=owner.user, data={"name": "Researcher"})
    writer = agent_create(organization=owner.organization, actor=owner.user, data={"name": "Writer"})
    orchestration = orchestration_create(
        organization=owner.organization,
        actor=owner.user,
        data={
            "name": "Brief Writer",
            "description": "Researches, then writes a brief.",
            "pattern": "sequential",
            "agent_ids": [researcher.pk, writer.pk],
        },
    )
    deployment, key = deployment_create(
        organization=owner.organization,
        actor=owner.user,
        agent=None,
        name=None,
        channels=["mcp"],
        orchestration_id=orchestration.pk,
    )
    assert deployment.name == "Brief Writer" and deployment.agent_id is None

    async def calls(session):
        tools = await session.list_tools()
        return tools, await session.call_tool("Brief_Writer", {"prompt": "A brief on tides"})

    tools, result = anyio.run(_session_calls, f"{live_server_process.url}/mcp/deployments/{deployment.pk}/", key, calls)
    assert [(t.name, t.description) for t in tools.tools] == [("Brief_Writer", "Researches, then writes a brief.")]
    assert result.is_error is False, result.content
    structured = result.structured_content
    assert structured["status"] == "COMPLETED" and result.content[0].text == structured["output"]
    execution = Execution.objects.get(pk=structured["execution_id"])
    assert execution.orchestration_id == orchestration.pk and execution.inputs == {"prompt": "A brief on tides"}
    audit = AuditEvent.objects.get(organization=owner.organization, action="deployment.invoke")
    assert audit.after["orchestration_id"] == str(orchestration.pk) and audit.after["channel"] == "mcp"
