"""Cancel of a run whose HTTP provider call has not had its first byte yet: the call ends at once
(its connection is closed, the provider sees it go), not at the next chunk that would come after
the provider's 30 s wait. Through the real runs worker and the scripted provider server, for the
OpenAI-compatible and the Anthropic client."""

from __future__ import annotations

import time

import pytest
from django.conf import settings

from apps.runs.models import Execution, TraceSpan, UsageRollup
from tests.agents.llm_server import LLMServer
from tests.crews.conftest import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PROVIDERS = {
    "openai": {"provider": "openai", "path": "/v1", "model": "gpt-4o-mini"},
    "anthropic": {"provider": "anthropic", "path": "", "model": "claude-sonnet-4-20250514"},
}


@pytest.fixture
def held_server():
    with LLMServer() as server:
        server.mode, server.delay = "hold", 30.0
        yield server


@pytest.mark.parametrize("kind", list(PROVIDERS))
def test_cancel_ends_a_provider_call_waiting_for_its_first_byte(
    member, client_for, held_server, celery_worker_process, kind
):
    from apps.agents.services import agent_create

    spec = PROVIDERS[kind]
    organization = member.organization
    organization.settings = {**(organization.settings or {}), "network_allowlist": ["127.0.0.1"]}
    organization.save(update_fields=["settings"])
    client = client_for(member)
    created = client.post(
        "/api/v1/providers",
        {
            "name": "held",
            "provider": spec["provider"],
            "base_url": f"{held_server.url}{spec['path']}",
            "api_key": "sk-held-1234",
            "default_model": spec["model"],
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    agent = agent_create(
        organization=organization,
        actor=member.user,
        data={"name": "Slow", "role": "Waiter", "goal": "Wait", "llm": spec["model"]},
    )
    accepted = client.post(
        "/api/v1/executions", {"agent_id": str(agent.pk), "description": "answer slowly"}, format="json"
    )
    assert accepted.status_code == 202, accepted.content
    pk = accepted.json()["execution_id"]
    assert held_server.holding.wait(60), "the provider call never arrived"

    requested = time.monotonic()
    assert client.post(f"/api/v1/executions/{pk}/cancel").status_code == 200
    wait_for(lambda: held_server.disconnects, 15, interval=0.02, message="the provider's connection to close")
    closed_after = held_server.disconnects[0] - requested
    wait_for(lambda: Execution.objects.get(pk=pk).status == "CANCELLED", 15, interval=0.05, message="CANCELLED")
    ended_after = time.monotonic() - requested
    # the worker sees the cancel at its next heartbeat; the watcher then closes the socket within 0.1 s
    bound = settings.KAI_RUN_HEARTBEAT_SECONDS + 1.5
    assert closed_after < bound, f"the connection closed {closed_after:.2f} s after the cancel"
    print(f"{kind}: connection closed {closed_after:.2f} s, run CANCELLED {ended_after:.2f} s after the cancel")

    execution = Execution.objects.get(pk=pk)
    assert execution.status == "CANCELLED" and execution.tokens_out == 0
    llm = TraceSpan.objects.get(execution_id=pk, kind="llm")
    assert llm.status == "cancelled" and llm.tokens_out == 0
    assert len(held_server.requests) == 1  # not asked again

    # nothing is counted after the end: the run's and the usage rollup's figures stay as they were
    counted = (execution.tokens_in, execution.tokens_out, execution.cost)
    usage = list(UsageRollup.objects.filter(agent_id=agent.pk).values_list("tokens_in", "tokens_out", "cost"))
    assert all(tokens_out == 0 for _in, tokens_out, _cost in usage)
    time.sleep(1.0)
    execution.refresh_from_db()
    assert (execution.tokens_in, execution.tokens_out, execution.cost) == counted
    assert list(UsageRollup.objects.filter(agent_id=agent.pk).values_list("tokens_in", "tokens_out", "cost")) == usage
