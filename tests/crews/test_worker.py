"""The run engine on a REAL Celery worker subprocess (threads pool, the test database and Redis
prefix) — never task_always_eager."""

from __future__ import annotations

import time
from decimal import Decimal

import orjson
import pytest

from apps.runs.models import ACTIVE_STATUSES, Execution, ExecutionEvent, ExecutionLog, TraceSpan, UsageRollup
from tests.crews.conftest import AGENTS_YAML, make_agent, make_crew, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _execution(pk) -> Execution:
    return Execution.objects.get(pk=pk)


def _priced_model(member, name="priced-builtin"):
    """A model configuration served by the builtin provider with a price, so cost is not zero."""
    from apps.agents.models import ModelConfig

    return ModelConfig.objects.create(
        organization=member.organization,
        name=name,
        provider_type="builtin",
        model="builtin",
        parameters={"pricing": {"input_per_1m": 1000, "output_per_1m": 2000}},
    )


def test_crew_of_three_agents_and_three_tasks_completes_with_logs_spans_tokens_and_cost(
    runs_worker, member, client_for
):
    _priced_model(member)
    agents = [make_agent(member, name=f"A{i}") for i in range(3)]
    agents_yaml = AGENTS_YAML
    for key, agent in zip(("researcher", "analyst", "writer"), agents):
        agents_yaml = agents_yaml.replace(f"{key}:\n", f"{key}:\n  agent_id: {agent.pk}\n")
    crew = make_crew(member, agents_yaml=agents_yaml, model="priced-builtin")
    client = client_for(member)
    accepted = client.post("/api/v1/executions", {"crew_id": str(crew.pk), "inputs": {"topic": "AI"}}, format="json")
    assert accepted.status_code == 202 and accepted.json()["status"] == "PENDING"
    pk = accepted.json()["execution_id"]
    execution = wait_for(lambda: (e := _execution(pk)).is_terminal and e, 60, message="the crew run to end")
    assert execution.status == "COMPLETED", execution.error
    assert execution.result.startswith("Builtin reply to: ")
    assert "Write the report" in execution.result and execution.error == ""
    assert execution.tokens_in > 0 and execution.tokens_out > 0
    assert execution.cost > 0
    assert execution.worker.startswith(runs_worker.node)  # the real worker of the runs queue ran it
    # status timeline through the one transition service
    assert list(ExecutionEvent.objects.filter(execution_id=pk).values_list("to_status", flat=True)) == [
        "PENDING",
        "PREPARING",
        "RUNNING",
        "COMPLETED",
    ]
    # logs: seq-numbered from 1 without gaps
    seqs = list(ExecutionLog.objects.filter(execution_id=pk).values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 8
    # spans: crew → 3 tasks → an agent each → an llm call each
    spans = list(TraceSpan.objects.filter(execution_id=pk))
    kinds = sorted(s.kind for s in spans)
    assert kinds == ["agent"] * 3 + ["llm"] * 3 + ["task"] * 4
    by_id = {s.span_id: s for s in spans}
    for span in spans:
        if span.kind == "llm":
            assert by_id[span.parent_span_id].kind == "agent" and span.tokens_out > 0 and span.cost > 0
            assert span.duration_ms is not None and span.ended_at >= span.started_at
        if span.kind == "agent":
            assert by_id[span.parent_span_id].kind == "task"
    llm_spans = [s for s in spans if s.kind == "llm"]
    assert sum(s.tokens_out for s in llm_spans) == execution.tokens_out
    assert sum((s.cost for s in llm_spans), Decimal(0)) == execution.cost
    # usage rolled up per agent/day/model
    rows = UsageRollup.objects.for_org(member.organization)
    assert {str(r.agent_id) for r in rows} == {str(a.pk) for a in agents}
    assert sum(r.tokens_out for r in rows) == execution.tokens_out and all(r.executions == 1 for r in rows)
    # the API views of the same run
    logs = client.get(f"/api/v1/execution-logs/{pk}", {"after": 2, "limit": 3}).json()
    assert [i["seq"] for i in logs["items"]] == [3, 4, 5] and logs["has_more"] is True
    trace = client.get(f"/api/v1/traces/{execution.trace_id}").json()
    assert len(trace["spans"]) == 10 and len(trace["tree"]) == 1 and len(trace["tree"][0]["children"]) == 3
    usage = client.get("/api/v1/usage").json()
    assert usage["total_tokens"] == execution.tokens_in + execution.tokens_out
    assert len(usage["by_agent"]) == 3 and usage["by_day"][0]["executions"] == 3
    agent_usage = client.get(f"/api/v1/usage/agents/{agents[0].pk}").json()
    assert agent_usage["llm_calls"] == 1 and agent_usage["total_executions"] == 1


def test_cancel_during_a_streaming_run_stops_token_spending(runs_worker, member, client_for):
    agent = make_agent(member)
    client = client_for(member)
    prompt = " ".join(f"word{i}" for i in range(400))
    accepted = client.post(
        f"/api/v1/agents/{agent.pk}/stream-prompt",
        {"prompt": prompt, "stream": False, "params": {"tokens_per_s": 40}},
        format="json",
    )
    assert accepted.status_code == 202, accepted.content
    pk = accepted.json()["execution_id"]
    wait_for(lambda: _execution(pk).tokens_out >= 10, 30, message="tokens to be streamed")
    requested_at = time.monotonic()
    assert client.post(f"/api/v1/executions/{pk}/cancel").status_code == 200
    execution = wait_for(
        lambda: (e := _execution(pk)).status == "CANCELLED" and e, 10, interval=0.05, message="CANCELLED"
    )
    assert time.monotonic() - requested_at < 5
    frozen = (
        execution.tokens_out,
        execution.cost,
        ExecutionLog.objects.filter(execution_id=pk).count(),
        TraceSpan.objects.filter(execution_id=pk).count(),
    )
    assert 10 <= execution.tokens_out < 400
    time.sleep(3)
    execution.refresh_from_db()
    assert (
        execution.tokens_out,
        execution.cost,
        ExecutionLog.objects.filter(execution_id=pk).count(),
        TraceSpan.objects.filter(execution_id=pk).count(),
    ) == frozen
    assert execution.status == "CANCELLED" and execution.completed_at is not None
    llm = TraceSpan.objects.get(execution_id=pk, kind="llm")
    assert llm.status == "cancelled" and llm.tokens_out == execution.tokens_out


def _sse_events(response) -> list[dict]:
    raw = b"".join(response.streaming_content).decode()
    events = []
    for block in raw.strip().split("\n\n"):
        data = [line[6:] for line in block.splitlines() if line.startswith("data: ")]
        if data:
            events.append(orjson.loads(data[0]))
    return events


def test_stream_prompt_streams_tokens_as_server_sent_events(runs_worker, member, client_for):
    agent = make_agent(member)
    client = client_for(member)
    response = client.post(
        f"/api/v1/agents/{agent.pk}/stream-prompt",
        {"prompt": "tell me about streams", "stream_id": "s-1"},
        format="json",
        HTTP_ACCEPT="text/event-stream",
    )
    assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"
    assert response["X-Stream-ID"] == "s-1"
    events = _sse_events(response)
    assert events[0]["type"] == "start" and events[0]["stream_id"] == "s-1"
    chunks = [e for e in events[1:] if not e["done"]]
    assert len(chunks) >= 5 and all(e["type"] == "stream_chunk" and e["stream_id"] == "s-1" for e in chunks)
    assert "".join(e["chunk"] for e in chunks) == "Builtin reply to: tell me about streams"
    assert events[-1]["done"] is True and events[-1]["status"] == "COMPLETED"
    execution = _execution(events[0]["execution_id"])
    assert execution.kind == "agent_prompt" and execution.result == "Builtin reply to: tell me about streams"


def test_agent_entry_points_task_command_and_execute(runs_worker, member, client_for):
    agent = make_agent(member, name="Ops")
    client = client_for(member)
    task = client.post(
        f"/api/v1/agents/{agent.pk}/task",
        {"description": "Summarise {subject}", "inputs": {"subject": "the logs"}},
        format="json",
    ).json()
    status = wait_for(
        lambda: (s := client.get(f"/api/v1/tasks/{task['task_id']}/status").json())["status"] == "COMPLETED" and s,
        30,
        message="the task",
    )
    assert "Summarise the logs" in status["result"]
    command = client.post(
        f"/api/v1/agents/{agent.pk}/command",
        {"command": "search_web", "params": {"query": "current weather"}},
        format="json",
    ).json()
    assert command["status"] == "PENDING" and command["stream_id"]
    done = wait_for(lambda: (e := _execution(command["execution_id"])).is_terminal and e, 30)
    assert done.status == "COMPLETED" and "Command: search_web" in done.result
    body = {
        "command": {
            "action": "summarize_inbox",
            "parameters": {"limit": 5},
            "user_id": "u1",
            "request_id": "r1",
            "priority": "high",
        },
        "wait_for_completion": True,
        "timeout_ms": 20000,
    }
    executed = client.post(f"/api/v1/agents/{agent.pk}/execute", body, format="json")
    assert executed.status_code == 200, executed.content
    data = executed.json()
    assert data["success"] is True and data["data"]["status"] == "COMPLETED"
    result = data["data"]["result"]
    assert result["success"] is True and "summarize_inbox" in result["data"]
    assert set(result["metadata"]) >= {
        "execution_time",
        "resources_used",
        "next_suggested_actions",
        "workflow_triggered",
    }
    assert _execution(data["data"]["execution_id"]).priority == 8
    queued = client.post(f"/api/v1/agents/{agent.pk}/execute", {"command": {"action": "x"}}, format="json")
    assert queued.status_code == 202 and queued.json()["data"]["status"] == "PENDING"


def test_orchestration_patterns_run_to_completion(runs_worker, member, client_for):
    client = client_for(member)
    agents = [
        make_agent(member, name=name, role=role)
        for name, role in (("Lead", "Coordinator"), ("Billing", "Billing specialist"), ("Tech", "Technical support"))
    ]
    ids = [str(a.pk) for a in agents]
    for pattern in ("sequential", "parallel", "ensemble", "router", "supervisor_worker", "hierarchical"):
        created = client.post(
            "/api/v1/orchestrations",
            {"name": f"O {pattern}", "pattern": pattern, "agent_ids": ids, "config_yaml": "max_rounds: 1\n"},
            format="json",
        ).json()
        response = client.post(
            f"/api/v1/orchestrations/{created['id']}/execute",
            {"input_data": {"input": "My invoice is wrong"}, "timeout_ms": 30000},
            format="json",
        )
        assert response.status_code == 200, (pattern, response.content)
        body = response.json()
        assert body["status"] == "COMPLETED", (pattern, body)
        assert body["output"] and len(body["trace_id"]) == 32 and "total_cost" in body
        executed = body["agents_executed"]
        if pattern == "router":
            assert executed[0] == ids[0] and len(executed) == 2
        else:
            assert set(executed) == set(ids), (pattern, executed)
    accepted = client.post(
        f"/api/v1/orchestrations/{created['id']}/execute", {"wait_for_completion": False}, format="json"
    )
    assert accepted.status_code == 202 and accepted.json()["status"] == "PENDING"


def test_per_plan_concurrency_cap_keeps_extra_runs_pending(make_member, client_for, transactional_db):
    from tests.crews.conftest import queues
    from tests.helpers import WorkerProcess

    member = make_member(plan="free")  # at most 2 runs at once
    agent = make_agent(member)
    client = client_for(member)
    worker = WorkerProcess("-Q", queues(), "-n", "cap@%h", "--concurrency", "6")
    try:
        worker.wait_alive(timeout=120)
        ids = [
            client.post(
                f"/api/v1/agents/{agent.pk}/task",
                {"description": " ".join(["step"] * 30), "params": {"tokens_per_s": 25}},
                format="json",
            ).json()["task_id"]
            for _ in range(4)
        ]
        peak = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            statuses = list(Execution.objects.filter(pk__in=ids).values_list("status", flat=True))
            peak = max(peak, sum(1 for s in statuses if s in ACTIVE_STATUSES))
            if all(s == "COMPLETED" for s in statuses):
                break
            time.sleep(0.05)
        assert all(s == "COMPLETED" for s in statuses), statuses
        assert peak == 2
    finally:
        worker.stop()
