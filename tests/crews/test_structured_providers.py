"""Structured output and model-judged guardrails against the OpenAI-compatible test server (a
local HTTP server speaking the API, driven by a script) on a REAL worker, and the first-try valid
rate of structured output on the builtin provider and on the test server."""

from __future__ import annotations

import json

import pytest

from apps.runs.models import Execution
from tests.crews.conftest import make_crew, wait_for
from tests.crews.crewai_projects import MARKET_SIZE_SCHEMA, RATE_SCHEMAS, market_schema
from tests.crews.scripted_llm import ScriptedLLMServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

AGENTS = "analyst:\n  role: Analyst\n  goal: Answer precisely\n  backstory: Exact.\n"


@pytest.fixture(scope="module")
def llm_server():
    with ScriptedLLMServer() as server:
        yield server


@pytest.fixture
def local_provider(member, client_for, llm_server, runs_worker):
    organization = member.organization
    organization.settings = {**(organization.settings or {}), "network_allowlist": ["127.0.0.1"]}
    organization.save(update_fields=["settings"])
    client = client_for(member)
    created = client.post(
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
    assert created.status_code == 201, created.content
    llm_server.requests.clear()
    llm_server.script, llm_server.honour_schema = [], False
    return client


def _run(client, crew, timeout=60) -> Execution:
    response = client.post("/api/v1/executions", {"crew_id": str(crew.pk), "inputs": {}}, format="json")
    assert response.status_code == 202, response.content
    pk = response.json()["execution_id"]
    return wait_for(lambda: (e := Execution.objects.get(pk=pk)).is_terminal and e, timeout, message=f"run {pk}")


def _crew(member, name, task_extra: str, model="gpt-4o-mini"):
    return make_crew(
        member,
        name=name,
        model=model,
        agents_yaml=AGENTS,
        tasks_yaml=(
            "size_task:\n  description: Estimate the market size of tidal energy\n  expected_output: JSON\n"
            f"  agent: analyst\n{task_extra}"
        ),
    )


def test_structured_output_is_asked_as_json_schema_and_retried_with_the_validation_errors(
    member, local_provider, llm_server
):
    market_schema(member)
    valid = {"market": "tidal energy", "size_usd_billion": 1.5, "year": 2024}
    llm_server.script = ["The market is big.", json.dumps({"market": "tidal energy"}), json.dumps(valid)]
    execution = _run(local_provider, _crew(member, "structured", "  output_json: market_size\n"))
    assert execution.status == "COMPLETED", execution.error
    assert execution.result["json_output"] == valid and execution.result["tasks_output"][0]["attempts"] == 3
    chats = llm_server.chats
    assert len(chats) == 3
    assert chats[0]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "market_size", "schema": MARKET_SIZE_SCHEMA},
    }
    second, third = chats[1]["messages"][-1]["content"], chats[2]["messages"][-1]["content"]
    assert "The market is big." in second and "the answer is not a JSON document" in second
    assert "'size_usd_billion' is a required property" in third and "'year' is a required property" in third


def test_a_sentence_guardrail_is_judged_by_a_model_and_its_feedback_drives_the_retry(
    member, local_provider, llm_server
):
    guard = '  guardrail: "The answer must mention the moon"\n  guardrail_max_retries: 1\n'
    llm_server.script = [
        "Tides are caused by wind.",
        json.dumps({"valid": False, "feedback": "mention the moon"}),
        "Tides are caused by the moon.",
        json.dumps({"valid": True, "feedback": ""}),
    ]
    execution = _run(local_provider, _crew(member, "judged", guard))
    assert execution.status == "COMPLETED", execution.error
    assert execution.result == "Tides are caused by the moon."
    chats = llm_server.chats
    assert len(chats) == 4
    judge = chats[1]
    assert judge["response_format"]["json_schema"]["name"] == "guardrail_verdict"
    assert "Requirement: The answer must mention the moon" in judge["messages"][-1]["content"]
    assert "Feedback: mention the moon" in chats[2]["messages"][-1]["content"]

    llm_server.requests.clear()
    llm_server.script = ["No.", json.dumps({"valid": False, "feedback": "still no moon"})]
    failed = _run(local_provider, _crew(member, "judged again", guard))
    assert failed.status == "FAILED"
    assert (
        "failed its guardrail 'The answer must mention the moon' after 2 attempts; last feedback: still no moon"
        in failed.error
    )


def _first_try_rate(member, client, model: str) -> tuple[dict, float]:
    outcomes = {}
    for name, schema in RATE_SCHEMAS.items():
        extra = "  guardrail_max_retries: 1\n  output_schema: " + json.dumps(schema) + "\n"
        execution = _run(client, _crew(member, f"{model} {name}", extra, model=model))
        first_try = execution.status == "COMPLETED" and execution.result["tasks_output"][0]["attempts"] == 1
        outcomes[name] = (execution.status, first_try)
    return outcomes, sum(ok for _, ok in outcomes.values()) / len(outcomes)


def test_first_try_valid_rate_on_builtin_and_on_the_test_server(member, local_provider, llm_server, capsys):
    llm_server.honour_schema = True  # the server answers in the schema it is sent, as strict structured outputs do
    builtin, builtin_rate = _first_try_rate(member, local_provider, "builtin")
    served, served_rate = _first_try_rate(member, local_provider, "gpt-4o-mini")
    with capsys.disabled():
        print(
            f"\nstructured output first-try valid rate: builtin {builtin_rate:.0%} {builtin}; "
            f"test server {served_rate:.0%} {served}"
        )
    # every shape but a regular-expression pattern is answered valid at the first try; the pattern
    # one fails after its retry (neither answer generator solves patterns) and fails the run
    assert {name for name, (_, ok) in builtin.items() if not ok} == {"pattern"}
    assert builtin["pattern"][0] == "FAILED" and served["pattern"][0] == "FAILED"
    assert {name for name, (_, ok) in served.items() if not ok} == {"pattern"}
    assert all(
        r["body"].get("response_format", {}).get("type") == "json_schema"
        for r in llm_server.requests
        if r["path"].endswith("/chat/completions")
    )
