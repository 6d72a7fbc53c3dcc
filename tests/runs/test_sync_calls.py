"""Every synchronous API creates an Execution that the real worker runs, and waits for it: a run
that ends within the wait is answered 200 with its ``execution_id``; one that outlasts the wait is
answered 202 with its ``execution_id`` and status, and goes on to COMPLETED on the worker."""

from __future__ import annotations

import time
import uuid

import pytest
from rest_framework.test import APIClient

from apps.runs.models import Execution

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]  # a real worker per test

#: the builtin model waits this long before its first token (a run that outlasts a short wait)
SLOW = {"latency_ms": 6000}
ACTIVE = {"PENDING", "PREPARING", "RUNNING"}


# --- the synchronous entry points: (HTTP status, execution id, run status or None) -------------


def agent_test(member, client, agent, params, wait, settings):
    settings.KAI_SYNC_RUN_WAIT_SECONDS = wait
    response = client.post(f"/api/v1/agents/{agent.pk}/test", {"prompt": "hi", "parameters": params}, format="json")
    body = response.json()
    return response.status_code, body.get("execution_id"), body.get("status")


def _deployment(member, agent):
    from apps.agents.services import deployment_create

    return deployment_create(
        organization=member.organization,
        actor=member.user,
        agent=agent,
        name=f"sync {uuid.uuid4().hex[:6]}",
        channels=["api", "mcp"],
    )


def deployment_invoke(member, client, agent, params, wait, settings):
    settings.KAI_SYNC_RUN_WAIT_SECONDS = wait
    deployment, key = _deployment(member, agent)
    response = APIClient(HTTP_AUTHORIZATION=f"Bearer {key}").post(
        f"/api/v1/deployments/{deployment.pk}/invoke", {"prompt": "hi", "parameters": params}, format="json"
    )
    body = response.json()
    return response.status_code, body.get("execution_id"), body.get("status")


def deployment_mcp(member, client, agent, params, wait, settings):
    """The MCP channel's tool call (what the streamable-HTTP tool runs): the body it answers with."""
    from apps.agents import mcp_channel

    settings.KAI_SYNC_RUN_WAIT_SECONDS = wait
    deployment, _key = _deployment(member, agent)
    body = mcp_channel._invoke(str(deployment.pk), "hi", params)
    return (202 if body.get("status") in ACTIVE else 200), body.get("execution_id"), body.get("status")


def agent_execute(member, client, agent, params, wait, settings):
    response = client.post(
        f"/api/v1/agents/{agent.pk}/execute",
        {
            "command": {"action": "answer"},
            "wait_for_completion": True,
            "timeout_ms": int(wait * 1000),
            "params": params,
        },
        format="json",
    )
    data = response.json()["data"]
    return response.status_code, data.get("execution_id"), data.get("status")


def orchestration_execute(member, client, agent, params, wait, settings):
    from apps.crews.services import orchestration_create

    orchestration = orchestration_create(
        organization=member.organization,
        actor=member.user,
        data={"name": f"sync {uuid.uuid4().hex[:6]}", "pattern": "sequential", "agent_ids": [agent.pk]},
    )
    response = client.post(
        f"/api/v1/orchestrations/{orchestration.pk}/execute",
        {"inputs": {"prompt": "hi"}, "wait_for_completion": True, "timeout_ms": int(wait * 1000), "params": params},
        format="json",
    )
    body = response.json()
    return response.status_code, body.get("execution_id"), body.get("status")


def workflow_execute(member, client, agent, params, wait, settings):
    from apps.workflows.services import workflow_create

    step = {"id": "s1", "agent_id": str(agent.pk), "action": "answer", "parameters": {}}
    if params:
        step["llm_params"] = params
    workflow, _secret = workflow_create(
        organization=member.organization,
        actor=member.user,
        data={
            "name": f"sync {uuid.uuid4().hex[:6]}",
            "definition": {"trigger": {"type": "manual", "conditions": {}}, "steps": [step]},
        },
    )
    response = client.post(
        f"/api/v1/workflows/{workflow.pk}/execute",
        {"wait_for_completion": True, "timeout_ms": int(wait * 1000)},
        format="json",
    )
    body = response.json()
    return response.status_code, body.get("execution_id"), body.get("status")


SYNC_PATHS = [agent_test, deployment_invoke, deployment_mcp, agent_execute, orchestration_execute, workflow_execute]


@pytest.mark.parametrize("entry", SYNC_PATHS, ids=lambda f: f.__name__)
def test_a_synchronous_call_answers_with_its_execution_and_times_out_to_202(
    member, client_for, settings, celery_worker_process, entry
):
    from apps.agents.services import agent_create

    client = client_for(member)
    agent = agent_create(
        organization=member.organization,
        actor=member.user,
        data={"name": "Sync", "role": "Answerer", "goal": "Answer", "llm": "builtin"},
    )

    status, execution_id, _status = entry(member, client, agent, {}, 60, settings)
    assert status == 200 and execution_id, (status, execution_id)
    execution = Execution.objects.get(pk=execution_id)
    assert execution.status == "COMPLETED" and execution.organization_id == member.organization.pk

    began = time.monotonic()
    status, execution_id, run_status = entry(member, client, agent, SLOW, 0.5, settings)
    assert time.monotonic() - began < SLOW["latency_ms"] / 1000  # answered when the wait ran out
    assert status == 202 and execution_id and run_status in ACTIVE, (status, execution_id, run_status)
    deadline = time.monotonic() + 60
    while not (execution := Execution.objects.get(pk=execution_id)).is_terminal and time.monotonic() < deadline:
        time.sleep(0.1)
    assert execution.status == "COMPLETED"
