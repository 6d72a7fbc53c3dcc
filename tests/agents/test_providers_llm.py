"""Providers and the LLM layer: the OpenAI-compatible path runs the real openai SDK against a
local chat-completions server (streaming included); budgets, timeouts, validation, usage."""

import time
from decimal import Decimal

import pytest

from apps.agents.models import Credential, ProviderUsage
from kai_platform.llm import LLMBlockedAddress, LLMTimeout, get_client
from kai_platform.llm.netguard import AllowList
from tests.helpers import assert_envelope

pytestmark = pytest.mark.django_db


def _provider(client, server, **extra):
    body = {
        "name": "local",
        "provider": "openai",
        "base_url": f"{server.url}/v1",
        "api_key": "sk-local-secret-1234",
        "default_model": "gpt-4o-mini",
        **extra,
    }
    response = client.post("/api/v1/providers", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def _agent(client, **extra):
    response = client.post("/api/v1/agents", {"name": "Writer", "llm": "gpt-4o-mini", **extra}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_sdk_streams_from_a_local_openai_compatible_server(llm_server):
    client = get_client(
        "openai",
        model="gpt-4o-mini",
        api_key="sk-abc",
        base_url=f"{llm_server.url}/v1",
        timeout=5,
        allowlist=AllowList.from_entries(["127.0.0.1"]),
    )
    chunks = list(client.stream([{"role": "user", "content": "say hi"}]))
    texts = [c.text for c in chunks if c.kind == "text"]
    assert len(texts) == 5 and "".join(texts) == "Hello from the local server"
    assert chunks[-1].kind == "usage" and chunks[-1].usage.output_tokens == 5 and chunks[-1].usage.input_tokens == 2
    request = llm_server.requests[-1]
    assert request["body"]["stream"] is True and request["headers"]["authorization"] == "Bearer sk-abc"


def test_sdk_client_refuses_loopback_without_allow_list(llm_server):
    client = get_client("openai", model="m", api_key="k", base_url=f"{llm_server.url}/v1", timeout=5)
    with pytest.raises(LLMBlockedAddress):
        list(client.stream([{"role": "user", "content": "x"}]))
    assert llm_server.requests == []


def test_sdk_client_times_out_within_its_timeout(llm_server):
    llm_server.mode, llm_server.delay = "slow", 5
    client = get_client(
        "openai",
        model="m",
        api_key="k",
        base_url=f"{llm_server.url}/v1",
        timeout=1,
        allowlist=AllowList.from_entries(["127.0.0.1"]),
    )
    started = time.monotonic()
    with pytest.raises(LLMTimeout):
        client.complete([{"role": "user", "content": "x"}])
    assert time.monotonic() - started < 3


def test_anthropic_sdk_streams_from_a_local_messages_server(llm_server):
    client = get_client(
        "anthropic",
        model="claude-sonnet-4-20250514",
        api_key="sk-ant-x",
        base_url=llm_server.url,
        timeout=5,
        allowlist=AllowList.from_entries(["127.0.0.1"]),
    )
    completion = client.complete([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}])
    assert completion.text == "Hello from the local server"
    assert completion.usage.input_tokens == 11 and completion.usage.output_tokens == 5
    request = llm_server.requests[-1]
    assert request["path"] == "/v1/messages" and request["body"]["system"] == "be brief"
    assert "sk-ant-x" in (
        request["headers"].get("x-api-key"),
        request["headers"].get("authorization", "").removeprefix("Bearer "),
    ), request["headers"]


def test_provider_key_is_encrypted_and_masked(owner_client, llm_server, allow_loopback):
    body = _provider(owner_client, llm_server)
    assert body["api_key_masked"] == "sk-…1234" and "api_key" not in body
    stored = Credential.objects.get(pk=body["credential"])
    assert "sk-local-secret-1234" not in stored.encrypted_value
    listed = owner_client.get("/api/v1/providers").content.decode()
    assert "sk-local-secret-1234" not in listed


def test_agent_test_through_openai_compatible_provider(
    owner_client, llm_server, allow_loopback, member, celery_worker_process
):
    provider = _provider(owner_client, llm_server)
    agent = _agent(owner_client)
    response = owner_client.post(f"/api/v1/agents/{agent['id']}/test", {"prompt": "write"}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["output"] == "Hello from the local server" and body["provider"] == "local"
    assert body["tokens"]["output"] == 5 and Decimal(body["cost"]) > 0
    assert llm_server.requests[-1]["headers"]["authorization"] == "Bearer sk-local-secret-1234"
    usage = owner_client.get(f"/api/v1/providers/{provider['id']}/usage?period=day").json()
    assert usage["totals"]["calls"] == 1 and usage["totals"]["output_tokens"] == 5
    assert Decimal(str(usage["current_spend"])) == Decimal(body["cost"])  # a JSON number; cost a decimal string
    assert Credential.objects.get(pk=provider["credential"]).usage_count == 1


def test_tool_calls_through_the_real_sdk(owner_client, llm_server, allow_loopback, celery_worker_process):
    llm_server.mode = "tool_call"
    _provider(owner_client, llm_server)
    agent = _agent(owner_client, tools=["calculator"])
    body = owner_client.post(f"/api/v1/agents/{agent['id']}/test", {"prompt": "what is 6*7"}, format="json").json()
    assert body["tool_calls"][0]["arguments"] == {"expression": "6*7"}
    assert '"result": 42' in body["output"]
    tool_message = llm_server.requests[-1]["body"]["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["tool_call_id"] == "call_1"


def test_spent_budget_stops_before_any_provider_call(owner_client, llm_server, allow_loopback):
    provider = _provider(owner_client, llm_server, budget_limit="0.0001")
    ProviderUsage.objects.create(
        organization_id=allow_loopback.pk,
        provider_id=provider["id"],
        day=__import__("django.utils.timezone").utils.timezone.now().date(),
        cost=Decimal("0.0002"),
        calls=1,
    )
    agent = _agent(owner_client)
    body = assert_envelope(owner_client.post(f"/api/v1/agents/{agent['id']}/test", {"prompt": "x"}, format="json"), 422)
    assert body["type"] == "budget_exceeded" and "local" in body["detail"]
    assert llm_server.requests == []


def test_provider_timeout_answers_an_envelope_within_the_timeout(
    owner_client, llm_server, allow_loopback, celery_worker_process
):
    llm_server.mode, llm_server.delay = "slow", 6
    _provider(owner_client, llm_server, timeout_seconds=1)
    agent = _agent(owner_client)
    started = time.monotonic()
    body = assert_envelope(
        owner_client.post(f"/api/v1/agents/{agent['id']}/test", {"prompt": "x"}, format="json"), 504, code="AGENT_003"
    )
    assert time.monotonic() - started < 4 and "1 s" in body["detail"]


def test_validate(owner_client, llm_server, allow_loopback, member):
    provider = _provider(owner_client, llm_server)
    ok = owner_client.post(f"/api/v1/providers/{provider['id']}/validate")
    assert ok.status_code == 200 and ok.json()["valid"] is True
    assert llm_server.requests[-1]["body"]["max_tokens"] == 1

    llm_server.mode = "unauthorized"
    body = assert_envelope(owner_client.post(f"/api/v1/providers/{provider['id']}/validate"), 422)
    assert "rejected its API key" in body["detail"]
    again = owner_client.get(f"/api/v1/providers/{provider['id']}").json()
    assert again["last_validation_ok"] is False

    builtin = next(p for p in owner_client.get("/api/v1/providers").json()["items"] if p["provider"] == "builtin")
    assert owner_client.post(f"/api/v1/providers/{builtin['id']}/validate").json()["valid"] is True


def test_unreachable_endpoint_fails_clearly_within_10s(owner_client, member):
    org = member.organization
    org.settings = {"network_allowlist": ["127.0.0.1"]}
    org.save()
    provider = owner_client.post(
        "/api/v1/providers",
        {"name": "down", "provider": "vllm", "base_url": "http://127.0.0.1:9/v1", "default_model": "llama3"},
        format="json",
    ).json()
    started = time.monotonic()
    body = assert_envelope(owner_client.post(f"/api/v1/providers/{provider['id']}/validate"), 503)
    assert time.monotonic() - started < 10 and "cannot be reached" in body["detail"]


def test_private_base_url_is_refused_unless_allow_listed(owner_client, member):
    for url in (
        "http://127.0.0.1:8000/v1",
        "http://10.0.0.5/v1",
        "http://169.254.169.254/latest",
        "http://localhost:11434/v1",
    ):
        body = assert_envelope(
            owner_client.post("/api/v1/providers", {"name": url, "provider": "ollama", "base_url": url}, format="json"),
            400,
        )
        assert body["errors"][0]["field"] == "base_url"
    member.organization.settings = {"network_allowlist": ["localhost"]}
    member.organization.save()
    assert (
        owner_client.post(
            "/api/v1/providers",
            {"name": "ollama", "provider": "ollama", "base_url": "http://localhost:11434/v1"},
            format="json",
        ).status_code
        == 201
    )


def test_models_create_list_get_by_name(owner_client, llm_server, allow_loopback, celery_worker_process):
    provider = _provider(owner_client, llm_server)
    created = owner_client.post(
        "/api/v1/models",
        {
            "name": "custom-gpt-4",
            "provider": "local",
            "model": "gpt-4o-mini",
            "parameters": {"temperature": 0.7, "max_tokens": 2000},
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    assert created.json()["provider_id"] == provider["id"] and created.json()["provider_type"] == "openai"
    got = owner_client.get("/api/v1/models/custom-gpt-4").json()
    assert got["parameters"] == {"temperature": 0.7, "max_tokens": 2000}
    assert owner_client.get(f"/api/v1/models/{got['id']}").json()["name"] == "custom-gpt-4"
    assert owner_client.get("/api/v1/models").json()["total"] == 1
    body = assert_envelope(owner_client.post("/api/v1/models", {"name": "x", "provider": "nope"}, format="json"), 400)
    assert body["errors"][0]["field"] == "provider"

    agent = _agent(owner_client, llm="custom-gpt-4")
    owner_client.post(f"/api/v1/agents/{agent['id']}/test", {"prompt": "x"}, format="json")
    sent = llm_server.requests[-1]["body"]
    assert sent["model"] == "gpt-4o-mini" and sent["temperature"] == 0.7 and sent["max_tokens"] == 2000


def test_provider_writes_need_a_builder_role(make_member, client_for):
    owner = make_member()
    user = client_for(make_member("user", organization=owner.organization))
    assert_envelope(user.post("/api/v1/providers", {"name": "p", "provider": "builtin"}, format="json"), 403)
    assert user.get("/api/v1/providers").status_code == 200


def test_a_provider_type_without_an_endpoint_of_its_own_needs_a_base_url(owner_client):
    """azure, vllm, … have no default endpoint: refused when written, not a 503 at the first call."""
    body = assert_envelope(
        owner_client.post("/api/v1/providers", {"name": "az", "provider": "azure"}, format="json"), 400
    )
    assert "base_url" in str(body)
    created = owner_client.post("/api/v1/providers", {"name": "oa", "provider": "openai"}, format="json")
    assert created.status_code == 201, created.content  # openai has its own endpoint
    changed = owner_client.patch(f"/api/v1/providers/{created.json()['id']}", {"provider": "vllm"}, format="json")
    assert_envelope(changed, 400)


def test_a_providers_config_is_an_object_with_object_parameters(owner_client):
    """The model resolver reads ``config.parameters`` of the default provider: a config that is not an
    object (or whose parameters are not) is refused when written, not a 500 at every later call."""
    for config in (True, [], "x", {"parameters": 5}, {"parameters": []}):
        body = {"name": "p", "provider": "builtin", "is_default": True, "config": config}
        assert_envelope(owner_client.post("/api/v1/providers", body, format="json"), 400)
    created = owner_client.post(
        "/api/v1/providers",
        {"name": "p", "provider": "builtin", "is_default": True, "config": {"parameters": {"temperature": 0.2}}},
        format="json",
    )
    assert created.status_code == 201, created.content
    patched = owner_client.patch(f"/api/v1/providers/{created.json()['id']}", {"config": True}, format="json")
    assert_envelope(patched, 400)
    generated = owner_client.post("/api/v1/task-generation/generate", {"description": "plan a trip"}, format="json")
    assert generated.status_code < 500, generated.content


def test_a_model_answer_holding_nul_characters_is_stored_and_answered_with_them_replaced(
    owner_client, llm_server, allow_loopback, celery_worker_process
):
    """PostgreSQL's text and jsonb cannot hold NUL: a provider's answer with one could not be logged,
    checkpointed or written as the run's result, so the run could not end. Each NUL is kept as U+FFFD,
    as a byte that does not decode is."""
    from apps.runs.models import Execution, ExecutionLog

    _provider(owner_client, llm_server)
    agent = _agent(owner_client)
    llm_server.reply = "before\x00after the NUL"
    response = owner_client.post(f"/api/v1/agents/{agent['id']}/test", {"prompt": "write"}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["output"] == "before\ufffdafter the NUL"
    run = Execution.objects.get(pk=body["execution_id"])
    assert run.status == "COMPLETED" and "before\ufffdafter" in str(run.result)
    assert ExecutionLog.objects.filter(execution=run).exists()
