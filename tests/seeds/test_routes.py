"""Seed routes and bodies of issue 20 item 6: agent uploads, voice training, ``page``, the free
test input, ``{task}``, ``mcp_command``, ``after_state``, seed 002 not-found codes, restart on
the agent socket, a template named like a builtin."""

from __future__ import annotations

import pytest

from apps.agents.services import agent_create
from apps.runs.models import Execution
from apps.workflows.models import Workflow
from tests.helpers import assert_envelope

pytestmark = pytest.mark.django_db

B = "/api/v1"


def _agent(member, **data):
    return agent_create(organization=member.organization, actor=member.user, data={"name": "Scout", **data})


def test_unknown_agent_and_workflow_answer_the_seed_codes(member, client_for, make_member):
    client = client_for(member)
    missing = "00000000-0000-4000-8000-000000000000"
    for path in (
        f"agents/{missing}",
        f"agents/{missing}/status",
        f"agents/{missing}/upload",
        f"agents/{missing}/voice",
    ):
        method = client.post if path.endswith(("upload", "voice")) else client.get
        body = assert_envelope(
            method(f"{B}/{path}", {}, format="json" if "voice" in path else "multipart"), 404, "AGENT_001"
        )
        assert body["type"] == "not_found"
    assert_envelope(client.post(f"{B}/agents/{missing}/restart"), 404, "AGENT_001")
    assert_envelope(client.post(f"{B}/deploy", {"agent_id": missing}, format="json"), 404, "AGENT_001")
    assert_envelope(client.get(f"{B}/workflows/{missing}"), 404, "WORKFLOW_001")
    # another organization's agent is as unknown as a missing one
    theirs = _agent(make_member())
    assert_envelope(client.get(f"{B}/agents/{theirs.pk}"), 404, "AGENT_001")
    # other models keep the generic code
    assert_envelope(client.get(f"{B}/credentials/{missing}"), 404, "GENERAL_001")
    assert Workflow.not_found_code == "WORKFLOW_001"


def test_page_beside_offset_on_lists(member, client_for):
    client = client_for(member)
    for name in ("a", "b", "c"):
        _agent(member, name=name)
    ordered = [a["id"] for a in client.get(f"{B}/agents?limit=3").json()["items"]]
    second = client.get(f"{B}/agents?page=2&limit=1").json()
    assert [a["id"] for a in second["items"]] == [ordered[1]] and second["offset"] == 1
    assert client.get(f"{B}/agents?page=2&limit=2").json()["offset"] == 2
    # an explicit offset wins; what is not an integer in range is refused, as the schema says
    assert client.get(f"{B}/agents?page=3&offset=0&limit=1").json()["offset"] == 0
    for bad in ("page=0", "page=x", "limit=0", "limit=", "offset=-1", "offset=1.5", "offset=0&page=0"):
        assert_envelope(client.get(f"{B}/agents?{bad}"), 400, "GENERAL_001")
    assert client.get(f"{B}/agents?limit=500").json()["limit"] == 100  # capped
    # any list, e.g. the audit log
    assert client.get(f"{B}/audit?page=2&limit=1").json()["offset"] == 1


def test_voice_training_is_used_by_the_next_command(member, client_for, make_member):
    client = client_for(member)
    _agent(member, name="Travel Planner")
    before = client.post(f"{B}/voice/process", {"text_fallback": "book me a flight to Rome"}, format="json").json()
    assert before["data"]["intent"]["action"] == "schedule"  # "book" is a built-in schedule verb
    taught = client.post(
        f"{B}/voice/train",
        {"intent": "book_flight", "phrases": ["Book me a flight", "fly me to", "book me a flight"]},
        format="json",
    )
    assert taught.status_code == 201, taught.content
    assert taught.json()["added"] == 2
    assert taught.json()["intents"] == [{"intent": "book_flight", "phrases": ["book me a flight", "fly me to"]}]
    after = client.post(f"{B}/voice/process", {"text_fallback": "book me a flight to Rome"}, format="json").json()
    assert after["data"]["command_understood"] is True
    assert after["data"]["intent"]["action"] == "book_flight"
    assert after["data"]["intent"]["alternative_intents"][0]["action"] == "schedule"
    # taught phrases are the organization's own
    other = client_for(make_member())
    assert other.get(f"{B}/voice/train").json() == {"intents": [], "total_phrases": 0}
    assert (
        other.post(f"{B}/voice/process", {"text_fallback": "fly me to Oslo"}, format="json").json()["data"]["intent"][
            "action"
        ]
        != "book_flight"
    )
    assert client.get(f"{B}/voice/train").json()["total_phrases"] == 2
    assert client.get(f"{B}/voice/capabilities").json()["training"] is True
    # bad bodies, roles, forgetting
    assert_envelope(client.post(f"{B}/voice/train", {"intent": "Book Flight", "phrases": ["x"]}, format="json"), 400)
    assert_envelope(client.post(f"{B}/voice/train", {"intent": "x", "phrases": ["!!"]}, format="json"), 400)
    user = client_for(make_member("user", organization=member.organization))
    assert user.get(f"{B}/voice/train").status_code == 200
    assert_envelope(user.post(f"{B}/voice/train", {"intent": "x", "phrases": ["y"]}, format="json"), 403)
    assert client.delete(f"{B}/voice/train?intent=book_flight").status_code == 204
    assert client.get(f"{B}/voice/train").json()["total_phrases"] == 0


def test_agent_test_takes_the_seed_003_free_input(celery_worker_process, member, client_for):
    """agents/{id}/test runs on a worker (issue 21: no model call in the web process), so a real one runs here."""
    from apps.agents.serializers import AgentTestRequestSerializer

    def parse(body):
        serializer = AgentTestRequestSerializer(data=body)
        return serializer.validated_data if serializer.is_valid() else None

    assert parse({"prompt": "hi", "parameters": {"temperature": 0}}) == {
        "prompt": "hi",
        "parameters": {"temperature": 0},
    }
    assert parse({"query": "What is MCP?", "context": "docs"}) == {
        "prompt": "What is MCP?",
        "input": {"query": "What is MCP?", "context": "docs"},
    }
    assert parse({"input_data": {"question": "Why?"}})["prompt"] == "Why?"
    assert parse({"a": 1, "b": [2]})["prompt"] == '{"a": 1, "b": [2]}'
    assert parse({}) is None and parse([1]) is None
    # server-owned names at the top level read as mass assignment; wrapped, they are plain input
    assert parse({"prompt": "x", "status": "COMPLETED"}) is None
    assert parse({"input_data": {"status": "late", "text": "Why?"}})["prompt"] == "Why?"
    agent = _agent(member)
    response = client_for(member).post(f"{B}/agents/{agent.pk}/test", {"question": "What is 2+2?"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["output"]


def test_orchestration_execute_takes_task(member, client_for):
    client = client_for(member)
    ids = [str(_agent(member, name=n).pk) for n in ("A", "B")]
    created = client.post(
        f"{B}/orchestrations", {"name": "O", "pattern": "sequential", "agent_ids": ids}, format="json"
    ).json()
    accepted = client.post(
        f"{B}/orchestrations/{created['id']}/execute",
        {"task": "Compare two vendors", "wait_for_completion": False},
        format="json",
    )
    assert accepted.status_code == 202, accepted.content
    assert Execution.objects.get(pk=accepted.json()["execution_id"]).inputs == {"task": "Compare two vendors"}


def test_deploy_answers_mcp_command(member, client_for):
    agent = _agent(member, name="Support Bot")
    body = (
        client_for(member)
        .post(
            f"{B}/deploy", {"agent_id": str(agent.pk), "channels": ["api", "mcp"], "name": "Support Bot"}, format="json"
        )
        .json()
    )
    assert body["mcp_command"] == (
        f"claude mcp add --transport http support-bot {body['mcp_url']} --header 'Authorization: Bearer {body['key']}'"
    )
    api_only = (
        client_for(member).post(f"{B}/deploy", {"agent_id": str(agent.pk), "channels": ["api"]}, format="json").json()
    )
    assert api_only["mcp_command"] is None and api_only["mcp_url"] is None


def test_system_modify_takes_after_state(member, client_for):
    client = client_for(member)
    response = client.post(
        f"{B}/system/modify",
        {
            "id": "ignored",
            "type": "system_setting",
            "description": "dark mode",
            "before_state": {},
            "after_state": {"theme": "dark"},
            "applied_by": "me",
            "rollback_available": True,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["after_state"] == {"theme": "dark"}
    member.organization.refresh_from_db()
    assert member.organization.settings["theme"] == "dark"
    assert_envelope(client.post(f"{B}/system/modify", {"type": "system_setting"}, format="json"), 400)


def test_a_new_organization_creates_a_template_named_like_a_builtin(owner_client):
    body = {
        "name": "Research Agent Template",
        "variables": ["task_description", "expected_output"],
        "template": "You are a research agent. Your task is to {task_description}. Please provide {expected_output}.",
    }
    created = owner_client.post(f"{B}/templates", body, format="json")
    assert created.status_code == 201, created.content
    names = [t["name"] for t in owner_client.get(f"{B}/templates?limit=100").json()["items"]]
    assert names.count("Research Agent Template") == 2
    assert_envelope(owner_client.post(f"{B}/templates", body, format="json"), 409)  # its own names stay unique


def test_query_values_outside_the_documented_enum_are_refused(owner_client):
    assert_envelope(owner_client.get(f"{B}/usage?period=decade"), 400, "GENERAL_001")
    assert owner_client.get(f"{B}/usage?period=month").status_code == 200
    assert_envelope(owner_client.get(f"{B}/metrics?metric_name=nope"), 400, "GENERAL_001")
    assert "metrics" in owner_client.get(f"{B}/metrics").json()  # no metric_name: the catalog
