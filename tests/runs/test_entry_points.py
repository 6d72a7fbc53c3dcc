"""One way to call an agent: every entry point makes a run that the real worker answers through
the OpenAI-compatible test server, and the same agent with the same input sends the provider the
same messages (system prompt, user message, tools) whichever way it was called. An agent whose
monthly budget is spent is refused on every path with the same error, before any provider call."""

from __future__ import annotations

import time
import uuid

import pytest
from rest_framework.test import APIClient

from tests.agents.llm_server import LLMServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]  # a real worker per test

PROMPT = "Summarise the tides"
SYSTEM = "You are Tide expert.\nKnows the sea.\nYour personal goal is: Explain tides\nAnswer in one line."


@pytest.fixture(scope="module")
def llm_server():
    with LLMServer() as server:
        yield server


@pytest.fixture
def setup(member, client_for, llm_server, celery_worker_process):
    """A real worker stopped before the test's tables are flushed (it may still be writing what
    follows a run's end: usage counters, terminal hooks)."""
    from apps.agents.services import agent_create

    organization = member.organization
    organization.settings = {**(organization.settings or {}), "network_allowlist": ["127.0.0.1"]}
    organization.save(update_fields=["settings"])
    client = client_for(member)
    provider = client.post(
        "/api/v1/providers",
        {
            "name": "local",
            "provider": "openai",
            "base_url": f"{llm_server.url}/v1",
            "api_key": "sk-local-1234",
            "default_model": "gpt-4o-mini",
        },
        format="json",
    )
    assert provider.status_code == 201, provider.content
    agent = agent_create(
        organization=organization,
        actor=member.user,
        data={
            "name": "Tides",
            "role": "Tide expert",
            "goal": "Explain tides",
            "backstory": "Knows the sea.",
            "llm": "gpt-4o-mini",
            "tools": ["calculator"],
            "config": {"system_prompt": "Answer in one line."},
        },
    )
    llm_server.requests.clear()
    return member, client, agent


def _wait_execution(execution_id, timeout: float = 30.0):
    from apps.runs.models import Execution

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        execution = Execution.objects.get(pk=execution_id)
        if execution.is_terminal:
            return execution
        time.sleep(0.05)
    raise AssertionError(f"run {execution_id} did not end")


def _ok(response, *statuses):
    assert response.status_code in (statuses or (200, 201, 202)), response.content
    return response.json()


# --- the entry points: each starts a run of the agent and returns (execution id, error or None) ----


def rest_test(member, client, agent, text):
    response = client.post(f"/api/v1/agents/{agent.pk}/test", {"prompt": text}, format="json")
    return _answer(response)


def rest_stream_prompt(member, client, agent, text):
    return _answer(
        client.post(f"/api/v1/agents/{agent.pk}/stream-prompt", {"prompt": text, "stream": False}, format="json")
    )


def rest_task(member, client, agent, text):
    return _answer(client.post(f"/api/v1/agents/{agent.pk}/task", {"description": text}, format="json"))


def rest_executions(member, client, agent, text):
    return _answer(client.post("/api/v1/executions", {"agent_id": str(agent.pk), "description": text}, format="json"))


def deployment_api(member, client, agent, text):
    from apps.agents.services import deployment_create

    deployment, key = deployment_create(
        organization=member.organization,
        actor=member.user,
        agent=agent,
        name=f"tides {uuid.uuid4().hex[:6]}",
        channels=["api", "mcp"],
    )
    public = APIClient(HTTP_AUTHORIZATION=f"Bearer {key}")
    return _answer(public.post(f"/api/v1/deployments/{deployment.pk}/invoke", {"prompt": text}, format="json"))


def deployment_mcp(member, client, agent, text):
    """The MCP channel's tool call (``mcp_channel._invoke``: what the streamable-HTTP tool runs)."""
    from apps.agents import mcp_channel
    from apps.agents.services import deployment_create

    deployment, _key = deployment_create(
        organization=member.organization,
        actor=member.user,
        agent=agent,
        name=f"tides {uuid.uuid4().hex[:6]}",
        channels=["mcp"],
    )
    return _call(lambda: mcp_channel._invoke(str(deployment.pk), text, None)["execution_id"])


def orchestration(member, client, agent, text):
    from apps.crews.services import orchestration_create

    orchestration_ = orchestration_create(
        organization=member.organization,
        actor=member.user,
        data={"name": f"one {uuid.uuid4().hex[:6]}", "pattern": "sequential", "agent_ids": [agent.pk]},
    )
    body = _ok(
        client.post(
            f"/api/v1/orchestrations/{orchestration_.pk}/execute",
            {"inputs": {"prompt": text}, "wait_for_completion": False},
            format="json",
        )
    )
    return _finished(body["execution_id"])


def rest_command(member, client, agent, text):
    return _answer(client.post(f"/api/v1/agents/{agent.pk}/command", {"command": text}, format="json"))


def rest_execute(member, client, agent, text):
    return _answer(client.post(f"/api/v1/agents/{agent.pk}/execute", {"command": {"action": text}}, format="json"))


def agent_socket_command(member, client, agent, text):
    """The agent socket's ``command`` message (its consumer's synchronous core)."""
    from apps.agents.consumers import _start_command

    return _call(lambda: _start_command(member.organization, member.user, agent, text, {})[0])


def hub_agent_execute(member, client, agent, text):
    """The hub socket's ``agent:execute`` client event (``client_events.run``, as the consumer calls it)."""
    from apps.events import client_events
    from kai_platform.tenancy.context import AuthContext

    auth = AuthContext(
        kind="jwt",
        organization=member.organization,
        role=member.role,
        session_id="s",
        expires_at=None,
        membership=member,
    )
    ok, body = client_events.run(
        "agent:execute", user=member.user, auth=auth, data={"agent_id": str(agent.pk), "command": {"action": text}}
    )
    return _finished(body["execution_id"]) if ok else (None, body["error_message"])


def workflow_step(member, client, agent, text):
    from apps.workflows.services import workflow_create, workflow_start

    workflow, _secret = workflow_create(
        organization=member.organization,
        actor=member.user,
        data={
            "name": f"flow {uuid.uuid4().hex[:6]}",
            "definition": {
                "trigger": {"type": "manual", "conditions": {}},
                "steps": [{"id": "s1", "agent_id": str(agent.pk), "action": text, "parameters": {}}],
            },
        },
    )
    run = workflow_start(workflow=workflow, actor=member.user, inputs={}, trigger_type="manual")
    parent = _wait_execution(run.execution_id)
    from apps.runs.models import Execution

    step = Execution.objects.filter(parent=parent).first()
    return (step.pk if step else parent.pk), (step.error if step else parent.error) or None


def voice(member, client, agent, text):
    from apps.voice.services import voice_process

    return _call(
        lambda: (
            voice_process(
                organization=member.organization,
                actor=member.user,
                agent=agent,
                text_fallback=f"ask {agent.name} to {text}",
                execute=True,
            ).execution_id
        )
    )


def crew(member, client, agent, text):
    agents_yaml = (
        f"tides:\n  role: Tide expert\n  goal: Explain tides\n  backstory: Knows the sea.\n  agent_id: {agent.pk}\n"
    )
    tasks_yaml = f"t1:\n  description: {text}\n  expected_output: one line\n  agent: tides\n"
    body = _ok(client.post("/api/v1/executions", {"agents_yaml": agents_yaml, "tasks_yaml": tasks_yaml}, format="json"))
    return _finished(body["execution_id"])


def _answer(response):
    body = response.json()
    if response.status_code >= 400:
        return None, body["detail"]
    execution_id = body.get("execution_id") or body.get("task_id") or (body.get("data") or {}).get("execution_id")
    assert execution_id, body
    return _finished(execution_id)


def _call(start):
    from rest_framework.exceptions import APIException

    try:
        execution_id = start()
    except APIException as exc:
        return None, str(exc.detail)
    if execution_id is None:
        return None, "no run"
    return _finished(execution_id)


def _finished(execution_id):
    execution = _wait_execution(execution_id)
    return execution.pk, execution.error or None


PROMPT_PATHS = [
    rest_test,
    rest_stream_prompt,
    rest_task,
    rest_executions,
    deployment_api,
    deployment_mcp,
    orchestration,
]
COMMAND_PATHS = [rest_command, rest_execute, agent_socket_command, hub_agent_execute, workflow_step]


@pytest.mark.parametrize("entry", PROMPT_PATHS + COMMAND_PATHS + [voice, crew], ids=lambda f: f.__name__)
def test_every_entry_point_sends_the_same_messages_and_refuses_a_spent_budget_the_same_way(setup, llm_server, entry):
    from apps.agents.models import Agent

    member, client, agent = setup
    execution_id, error = entry(member, client, agent, PROMPT)
    assert error is None and execution_id is not None
    chats = [r["body"] for r in llm_server.requests if r["path"].endswith("/chat/completions")]
    assert len(chats) == 1, chats
    messages, tools = chats[0]["messages"], chats[0].get("tools") or []
    if entry is not crew:  # a crew's agents speak as its YAML describes them
        assert messages[0] == {"role": "system", "content": SYSTEM}
        assert [t["function"]["name"] for t in tools] == ["calculator"]
    user = messages[1]["content"]
    if entry in PROMPT_PATHS:
        assert messages[1:] == [{"role": "user", "content": PROMPT}]
    elif entry in COMMAND_PATHS:
        assert messages[1:] == [{"role": "user", "content": f"Command: {PROMPT}"}]
    else:  # voice: the command understood from the utterance; crew: the task and what to hand back
        assert PROMPT.lower() in user.lower()

    llm_server.requests.clear()
    Agent.objects.filter(pk=agent.pk).update(config={**agent.config, "budget_limit_usd": 0})
    agent.refresh_from_db()
    _execution_id, error = entry(member, client, agent, PROMPT)
    assert error == "budget exceeded: agent 'Tides' spent $0.0000 of its $0.0000 monthly budget"
    assert [r for r in llm_server.requests if r["path"].endswith("/chat/completions")] == []
