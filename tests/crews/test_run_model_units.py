"""The pieces of the crew run model without a worker: the builtin's schema instances, answer
parsing and validation, builtin guardrails, the max_rpm limiter, deadlines, coworker lookup and
the LLM clients' response_format requests."""

from __future__ import annotations

import json

import jsonschema
import pytest

from apps.crews import guardrails, structured
from apps.crews.delegation import ASK, DELEGATE, coworker_tools, find_coworker
from apps.crews.limits import Deadline, RateLimiter
from apps.runs.runner import AgentProfile, RunFailed
from kai_platform.llm import get_client
from kai_platform.llm.netguard import AllowList
from kai_platform.llm.structured import instance_of
from tests.agents.llm_server import LLMServer
from tests.crews.crewai_projects import RATE_SCHEMAS


@pytest.fixture
def llm_server():
    with LLMServer() as server:
        yield server


@pytest.mark.parametrize("name", [n for n in RATE_SCHEMAS if n != "pattern"])
def test_the_builtin_instance_of_a_schema_is_valid(name):
    schema = RATE_SCHEMAS[name]
    jsonschema.validate(instance_of(schema), schema)


def test_the_builtin_provider_answers_json_in_the_schema_asked():
    schema = RATE_SCHEMAS["nested"]
    text = (
        get_client("builtin", model="builtin")
        .complete([{"role": "user", "content": "hi"}], params={"response_format": {"name": "n", "schema": schema}})
        .text
    )
    jsonschema.validate(json.loads(text), schema)


def test_answers_are_parsed_from_fences_and_prose_and_errors_name_the_path():
    schema = structured.OutputSchema("s", RATE_SCHEMAS["enum_bounds"])
    value, errors = structured.check(schema, 'Sure!\n```json\n{"sentiment": "positive", "confidence": 9}\n```')
    assert value == {"sentiment": "positive", "confidence": 9} and errors == [
        "confidence: 9 is greater than the maximum of 5"
    ]
    assert structured.check(schema, "no json here")[1] == ["the answer is not a JSON document"]
    assert structured.check(schema, '{"sentiment": "negative", "confidence": 2}') == (
        {"sentiment": "negative", "confidence": 2},
        [],
    )


def test_builtin_guardrails():
    assert guardrails.builtin_check("max_words:3", None)("one two three").ok
    verdict = guardrails.builtin_check("max_words:3", None)("one two three four")
    assert not verdict.ok and verdict.feedback == "the answer has 4 words; at most 3 are allowed"
    assert guardrails.builtin_check(r"regex:^\d+$", None)("42").ok
    assert not guardrails.builtin_check(r"regex:^\d+$", None)("forty-two").ok
    assert not guardrails.builtin_check("not_contains:TODO", None)("still a todo here").ok
    with pytest.raises(RunFailed, match="not a valid regular expression"):
        guardrails.builtin_check("regex:(", None)
    with pytest.raises(RunFailed, match="max_words takes a whole number"):
        guardrails.builtin_check("max_words:many", None)
    assert guardrails.judge_verdict('{"valid": false, "feedback": "shorter"}') == guardrails.Verdict(False, "shorter")
    assert not guardrails.judge_verdict("looks fine to me").ok


def test_the_rate_limiter_waits_for_the_window_and_stops_when_told():
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    limiter = RateLimiter(2, clock=lambda: now[0], sleep=sleep)
    assert limiter.acquire() == 0 and limiter.acquire() == 0
    assert limiter.acquire() == pytest.approx(60.0)  # the third call of the minute waits for the first's slot
    assert now[0] == pytest.approx(60.0)

    def stop():
        raise RunFailed("cancelled")

    with pytest.raises(RunFailed):
        RateLimiter(1, clock=lambda: now[0], sleep=sleep).acquire(stop)


def test_deadlines():
    now = [0.0]
    deadline = Deadline(2, "agent 'w'", clock=lambda: now[0])
    deadline.check()
    now[0] = 2.5
    with pytest.raises(RunFailed, match="agent 'w' exceeded its max_execution_time of 2 s"):
        deadline.check()
    Deadline(None, "x", clock=lambda: now[0]).check()


def test_coworker_tools_find_coworkers_by_role_key_or_name_and_report_unknown_ones():
    researcher = AgentProfile(key="researcher", name="researcher", role="Senior Researcher")
    writer = AgentProfile(key="writer", name="writer", role="Writer")
    asked = []
    tools = coworker_tools([researcher, writer], lambda who, prompt: asked.append((who.key, prompt)) or "done")
    assert set(tools) == {DELEGATE, ASK}
    assert find_coworker('"senior researcher"', [researcher, writer]) is researcher
    assert tools[DELEGATE].run({"task": "Dig", "context": "AI", "coworker": "writer"}) == "done"
    assert asked == [("writer", "Dig\n\nThis is the context you're working with:\nAI")]
    assert tools[ASK].run({"question": "?", "context": "", "coworker": "Boss"}).startswith("error: no coworker")
    assert coworker_tools([], lambda *a: "") == {}


def test_openai_and_anthropic_clients_ask_for_the_schema(llm_server):
    schema = RATE_SCHEMAS["flat"]
    fmt = {"response_format": {"name": "market size!", "schema": schema}}
    client = get_client(
        "openai",
        model="m",
        api_key="k",
        base_url=f"{llm_server.url}/v1",
        timeout=5,
        allowlist=AllowList.from_entries(["127.0.0.1"]),
    )
    client.complete([{"role": "user", "content": "hi"}], params=fmt)
    assert llm_server.requests[-1]["body"]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "market_size_", "schema": schema},
    }
    deepseek = get_client(
        "deepseek",
        model="m",
        api_key="k",
        base_url=f"{llm_server.url}/v1",
        timeout=5,
        allowlist=AllowList.from_entries(["127.0.0.1"]),
    )
    deepseek.complete([{"role": "user", "content": "hi"}], params=fmt)
    assert llm_server.requests[-1]["body"]["response_format"] == {"type": "json_object"}
    anthropic = get_client(
        "anthropic",
        model="claude",
        api_key="k",
        base_url=llm_server.url,
        timeout=5,
        allowlist=AllowList.from_entries(["127.0.0.1"]),
    )
    anthropic.complete([{"role": "user", "content": "hi"}], params=fmt)
    body = llm_server.requests[-1]["body"]
    assert body["tool_choice"] == {"type": "tool", "name": "structured_answer"}
    assert body["tools"][-1]["input_schema"] == schema


def test_run_settings_are_parsed_and_a_wrong_type_is_an_error_naming_the_key():
    from apps.crews import specs

    agents = "w:\n  role: W\n  goal: G\n  backstory: B\n  max_iter: many\n  allow_delegation: true\n  max_rpm: 10\n"
    tasks = (
        "t:\n  description: D\n  expected_output: E\n  agent: w\n  async_execution: yes\n"
        "  output_schema: {type: object}\n  guardrail_max_retries: -1\n  output_file: out/a.md\n"
    )
    spec = specs.parse_crew(agents, tasks)
    messages = [e.as_envelope_error()["message"] for e in spec.errors]
    assert messages == [
        "line 5: agent 'w': `max_iter` must be an integer ≥ 0",
        "line 7: task 't': `guardrail_max_retries` must be an integer ≥ 0",
    ]
    agent, task = spec.agents[0], spec.tasks[0]
    assert (agent.max_iter, agent.allow_delegation, agent.max_rpm) == (25, True, 10)  # CrewAI's default max_iter
    assert task.async_execution is True and task.output_schema == {"type": "object"}
    assert task.output_file == "out/a.md" and task.guardrail_max_retries == 3 and task.create_directory is True


def test_anthropic_forced_answer_tool_call_becomes_the_json_text(monkeypatch):
    """The stream of a forced ``structured_answer`` call (Anthropic's event shapes) yields the JSON
    text of its input, not a tool call; another tool's call stays a tool call."""
    from types import SimpleNamespace as NS

    from kai_platform.llm.anthropic_client import AnthropicClient

    def events(name):
        usage = NS(input_tokens=3, output_tokens=1)
        return [
            NS(type="message_start", message=NS(usage=usage)),
            NS(type="content_block_start", index=0, content_block=NS(type="tool_use", id="tu_1", name=name)),
            NS(type="content_block_delta", index=0, delta=NS(type="input_json_delta", partial_json='{"market": ')),
            NS(type="content_block_delta", index=0, delta=NS(type="input_json_delta", partial_json='"tides"}')),
            NS(type="content_block_stop", index=0),
            NS(type="message_delta", usage=NS(output_tokens=7)),
        ]

    class FakeSDK:
        def __init__(self, name):
            self.messages = NS(create=lambda **kwargs: iter(events(name)))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    client = AnthropicClient(model="claude", api_key="k")
    fmt = {"response_format": {"name": "m", "schema": {"type": "object", "properties": {"market": {"type": "string"}}}}}
    monkeypatch.setattr(client, "_sdk_client", lambda aborter=None: FakeSDK("structured_answer"))
    answer = client.complete([{"role": "user", "content": "hi"}], params=fmt)
    assert json.loads(answer.text) == {"market": "tides"} and answer.tool_calls == []
    monkeypatch.setattr(client, "_sdk_client", lambda aborter=None: FakeSDK("calculator"))
    other = client.complete([{"role": "user", "content": "hi"}], tools=[{"name": "calculator"}], params=fmt)
    assert other.text == "" and [c.name for c in other.tool_calls] == ["calculator"]
