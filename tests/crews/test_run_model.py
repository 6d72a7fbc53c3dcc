"""CrewAI's run model on a REAL Celery worker (builtin provider): crews kept in CrewAI's project
layout (tests/crews/projects) run through ``POST /executions`` — structured output (named and
inline schemas), async tasks awaited by their context, output files, markdown, callbacks,
planning, guardrails that fail the run, delegation and the hierarchical manager, and the limits."""

from __future__ import annotations

import pytest
from rest_framework.exceptions import ValidationError

from apps.runs.models import Execution, TraceSpan
from tests.crews.conftest import make_crew, wait_for
from tests.crews.crewai_projects import callback_webhook, market_schema, project_crew

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _start(client, crew, inputs, **extra) -> str:
    response = client.post("/api/v1/executions", {"crew_id": str(crew.pk), "inputs": inputs, **extra}, format="json")
    assert response.status_code == 202, response.content
    return response.json()["execution_id"]


def _start_unchecked(crew, member) -> str:
    """A run queued the way the engine queues it (a schedule, a run created before a change), without
    the API's create-time checks."""
    from apps.runs.models import ExecutionKind
    from apps.runs.services import execution_create

    definition = {
        "name": crew.name,
        "agents_yaml": crew.agents_yaml,
        "tasks_yaml": crew.tasks_yaml,
        "process": crew.process,
        "model": crew.model,
        "config": crew.config or {},
    }
    return str(
        execution_create(
            organization=member.organization,
            actor=member.user,
            kind=ExecutionKind.CREW,
            crew=crew,
            definition=definition,
            inputs={"topic": "x"},
        ).pk
    )


def _ended(pk, timeout=90) -> Execution:
    return wait_for(lambda: (e := Execution.objects.get(pk=pk)).is_terminal and e, timeout, message=f"run {pk}")


def _spans(pk, kind=None):
    spans = TraceSpan.objects.filter(execution_id=pk).order_by("started_at")
    return list(spans.filter(kind=kind) if kind else spans)


def test_structured_async_file_markdown_callback_and_planning(runs_worker, member, client_for):
    from apps.files.models import StoredFile
    from apps.files.selectors import open_file
    from apps.webhooks.models import WebhookDelivery

    market_schema(member)
    webhook = callback_webhook(member)
    crew = project_crew(member, "market_research")
    client = client_for(member)
    # each model call takes 0.6 s, so two async tasks that ran one after the other would not overlap
    pk = _start(client, crew, {"topic": "Robotics"}, params={"latency_ms": 600})
    execution = _ended(pk)
    assert execution.status == "COMPLETED", execution.error
    result = execution.result
    by_task = {t["task"]: t for t in result["tasks_output"]}
    assert by_task["market_size_task"]["json_output"].keys() == {"market", "size_usd_billion", "year"}
    assert len(by_task["competitors_task"]["json_output"]["competitors"]) == 2
    assert all(t["attempts"] == 1 for t in result["tasks_output"])  # the builtin answers schema-valid JSON first
    # the report read both async tasks' JSON as its context, with the plan and the Markdown instruction
    report = by_task["report_task"]["raw"]
    assert '"size_usd_billion"' in report and '"competitors"' in report
    assert "The crew's plan for this task" in report and "formatted in Markdown" in report
    # the async tasks ran at the same time, and the report only after both
    tasks = {s.name: s for s in _spans(pk, "task")}
    first, second, last = tasks["market_size_task"], tasks["competitors_task"], tasks["report_task"]
    assert first.started_at < second.ended_at and second.started_at < first.ended_at
    assert last.started_at >= max(first.ended_at, second.ended_at)
    assert "planning" in tasks and tasks["planning"].ended_at <= first.started_at
    # the output file, under its directory prefix, holds the report; its id is in the result
    file_ref = by_task["report_task"]["output_file"]
    assert result["files"] == [file_ref] and file_ref["path"] == "reports/Robotics/report.md"
    stored = StoredFile.objects.for_org(member.organization).get(pk=file_ref["file_id"])
    assert stored.name == "report.md" and stored.execution_id == execution.pk
    with open_file(stored=stored) as handle:
        assert handle.read().decode() == report
    assert client.get(f"/api/v1/files/{stored.pk}").json()["name"] == "report.md"
    # the callback: one crew.task_completed delivery to the named webhook
    delivery = WebhookDelivery.objects.get(webhook=webhook, event_type="crew.task_completed")
    assert delivery.event_type == "crew.task_completed" and delivery.payload["data"]["task"] == "report_task"
    assert delivery.payload["execution_id"] == str(execution.pk)


def test_guardrail_failure_retries_then_fails_naming_it_and_missing_references_fail_before_any_call(
    runs_worker, member, client_for
):
    client = client_for(member)
    strict = _start(client, project_crew(member, "strict_editor"), {"topic": "tides"})
    with pytest.raises(ValidationError, match="JSON Schemas this organization lacks: nowhere"):
        make_crew(
            member,
            name="needs schema",
            tasks_yaml=("t:\n  description: d\n  expected_output: e\n  agent: writer\n  output_json: nowhere\n"),
        )
    # a schema deleted after the crew was saved fails the run before any model call
    doomed = market_schema(member)
    missing_schema = make_crew(
        member,
        name="needs schema",
        tasks_yaml=("t:\n  description: d\n  expected_output: e\n  agent: writer\n  output_json: market_size\n"),
    )
    doomed.delete()
    hook_yaml = "t:\n  description: d\n  expected_output: e\n  agent: writer\n  callback: {}\n"
    with pytest.raises(ValidationError, match="no active webhook subscription of this organization: nobody"):
        make_crew(member, name="needs hook", tasks_yaml=hook_yaml.format("nobody"))
    # a subscription switched off after the crew was saved: the run is refused at create, naming it
    gone = callback_webhook(member, name="gone-later")
    missing_hook = make_crew(member, name="needs hook", tasks_yaml=hook_yaml.format(gone.pk))
    gone.is_active = False
    gone.save(update_fields=["is_active"])
    refused = client.post(
        "/api/v1/executions", {"crew_id": str(missing_hook.pk), "inputs": {"topic": "x"}}, format="json"
    )
    assert (
        refused.status_code == 400
        and f"no active webhook subscription of this organization: {gone.pk}" in refused.json()["errors"][0]["message"]
    )

    execution = _ended(strict)
    assert execution.status == "FAILED"
    assert "guardrail 'not_contains:Builtin reply'" in execution.error and "after 3 attempts" in execution.error
    assert "last feedback: the answer must not contain 'Builtin reply'" in execution.error
    assert [s.name for s in _spans(strict, "task")][1:] == [
        "edit_task",
        "edit_task (attempt 2)",
        "edit_task (attempt 3)",
    ]
    # each retry sent the refused answer and the feedback back to the agent (the builtin echoes its prompt)
    retry = _spans(strict, "task")[2]
    assert "Your previous answer (attempt 1) was refused" in retry.attributes["output"]
    assert "Feedback: the answer must not contain 'Builtin reply'" in retry.attributes["output"]
    logs = list(execution.logs.filter(level="warning").values_list("message", flat=True))
    assert sum("refused attempt" in m for m in logs) == 3

    no_schema = _start_unchecked(missing_schema, member)
    failed = _ended(no_schema)
    assert failed.status == "FAILED" and "names JSON Schema 'market_size'" in failed.error
    assert _spans(no_schema, "llm") == []


def test_hierarchical_manager_delegates_through_coworker_tools(runs_worker, member, client_for):
    client = client_for(member)
    pk = _start(client, project_crew(member, "managed_team"), {"topic": "tides"})
    execution = _ended(pk)
    assert execution.status == "COMPLETED", execution.error
    spans = _spans(pk)
    tools = [s for s in spans if s.kind == "tool"]
    assert [t.name for t in tools] == ["delegate_work_to_coworker", "ask_question_to_coworker"]
    agents = [s.name for s in spans if s.kind == "agent"]
    # the manager (the crew's lead) works every task and asks the coworkers it names
    assert agents == ["Team Lead", "Team Lead", "Researcher", "Team Lead", "Writer", "Team Lead"]
    assert "Tool delegate_work_to_coworker returned: Builtin reply to: Find three facts" in execution.result


def test_limits_max_execution_time_and_max_iter(runs_worker, member, client_for):
    client = client_for(member)
    slow = make_crew(
        member,
        name="slow",
        agents_yaml=("writer:\n  role: Writer\n  goal: Write\n  backstory: Slow.\n  max_execution_time: 1\n"),
        tasks_yaml="t:\n  description: Write at length\n  expected_output: Text\n  agent: writer\n",
    )
    timed = _start(client, slow, {}, params={"latency_ms": 1500})
    capped = {}
    for max_iter in (0, 1):
        crew = make_crew(
            member,
            name=f"max_iter {max_iter}",
            agents_yaml=(
                "calc:\n  role: Calculator\n  goal: Compute\n  backstory: Exact.\n  tools: [calculator]\n"
                f"  max_iter: {max_iter}\n"
            ),
            tasks_yaml='t:\n  description: "Compute.\\n/tool calculator {\\"expression\\": \\"6*7\\"}"\n'
            "  expected_output: A number\n  agent: calc\n",
        )
        capped[max_iter] = _start(client, crew, {})
    execution = _ended(timed)
    assert execution.status == "FAILED" and "exceeded its max_execution_time of 1 s" in execution.error
    for pk in capped.values():
        assert _ended(pk).status == "COMPLETED", _ended(pk).error
    # max_iter 0: no tool round, the model answers at once; 1: one round of tool calls, then the answer
    assert _spans(capped[0], "tool") == [] and len(_spans(capped[0], "llm")) == 1
    assert [s.name for s in _spans(capped[1], "tool")] == ["calculator"] and len(_spans(capped[1], "llm")) == 2
    assert "42" in Execution.objects.get(pk=capped[1]).result
