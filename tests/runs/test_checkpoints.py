"""The step log in the engine, in process: a checkpointed run taken up again after its worker was
lost answers every completed model call, tool call and task from the log (the provider and the
tool are not called: here they fail if they are), whichever order parallel branches reach them
in, and ends with the first attempt's result. Kinds that do not checkpoint write no step."""

from __future__ import annotations

import pytest

from apps.runs import lifecycle, registry, services
from apps.runs.checkpoints import default_max_attempts, request_hash
from apps.runs.models import Execution, ExecutionKind, ExecutionStep, TraceSpan
from tests.crews.conftest import make_agent

pytestmark = pytest.mark.django_db(transaction=True)

TOOL_PROMPT = 'Compute\n/tool calculator {"expression": "6*7"}'


def _orchestration_run(member, pattern: str):
    agents = [make_agent(member, name=f"Agent {i}", role=f"Role {i}", tools=["calculator"]) for i in range(3)]
    return services.execution_create(
        organization=member.organization,
        actor=member.user,
        kind=ExecutionKind.ORCHESTRATION,
        inputs={"input": TOOL_PROMPT},
        enqueue=False,  # run in process by the test
        definition={"pattern": pattern, "agent_ids": [str(a.pk) for a in agents], "config": {}, "name": "Parallel"},
    )


def _lose_worker(execution_id) -> None:
    """What the reaper does to a run whose worker died mid-run: back to PENDING for another attempt."""
    Execution.objects.filter(pk=execution_id).update(status="PENDING", worker="", result=None, completed_at=None)


def _forbid_provider_and_tools(monkeypatch):
    from kai_platform.llm.builtin import BuiltinClient

    def no_call(*args, **kwargs):
        raise AssertionError("a completed step was called again")

    monkeypatch.setattr(BuiltinClient, "stream", no_call)
    monkeypatch.setitem(registry._services, "tool_run", no_call)


@pytest.mark.parametrize("pattern", ["parallel", "supervisor_worker"])
def test_a_resumed_orchestration_answers_every_completed_step_from_the_log(member, monkeypatch, pattern):
    execution = _orchestration_run(member, pattern)
    assert execution.max_attempts == default_max_attempts(ExecutionKind.ORCHESTRATION) == 3
    assert lifecycle.run(execution.pk, worker="first") == "completed"
    first = Execution.objects.get(pk=execution.pk)
    steps = ExecutionStep.objects.filter(execution_id=execution.pk)
    assert (
        steps.filter(kind="tool").count() >= 3
        and steps.filter(kind="task").count() == steps.filter(kind="task").values("step").distinct().count()
    )
    calls = TraceSpan.objects.filter(execution_id=execution.pk, kind="llm").count()

    _lose_worker(execution.pk)
    _forbid_provider_and_tools(monkeypatch)
    assert lifecycle.run(execution.pk, worker="second") == "completed"
    resumed = Execution.objects.get(pk=execution.pk)
    assert resumed.status == "COMPLETED" and resumed.attempts == 2
    assert resumed.result["output"] == first.result["output"] and resumed.result["outputs"] == first.result["outputs"]
    # nothing was spent or counted twice
    assert (resumed.tokens_in, resumed.tokens_out, resumed.cost) == (first.tokens_in, first.tokens_out, first.cost)
    assert resumed.result["total_cost"] == first.result["total_cost"]
    assert TraceSpan.objects.filter(execution_id=execution.pk, kind="llm").count() == calls
    assert (
        TraceSpan.objects.filter(execution_id=execution.pk, kind="task", attributes__from_checkpoint=True).count()
        == steps.filter(kind="task").count()
    )


def test_a_task_cut_off_mid_way_resumes_from_its_completed_model_and_tool_calls(member, monkeypatch):
    """The task-level entry is missing (the worker died inside the task): its model and tool calls
    that completed are answered one by one, and only what had not completed is asked again."""
    execution = _orchestration_run(member, "sequential")
    assert lifecycle.run(execution.pk, worker="first") == "completed"
    first = Execution.objects.get(pk=execution.pk)
    last_task = ExecutionStep.objects.filter(execution_id=execution.pk, kind="task").order_by("-id").first()
    last_call = ExecutionStep.objects.filter(execution_id=execution.pk, kind="llm").order_by("-id").first()
    ExecutionStep.objects.filter(pk__in=[last_task.pk, last_call.pk]).delete()  # died before they completed

    _lose_worker(execution.pk)
    from kai_platform.llm.builtin import BuiltinClient

    real = BuiltinClient.stream
    asked = []

    def counted(self, messages, tools=None, params=None):
        asked.append(messages)
        yield from real(self, messages, tools, params)

    monkeypatch.setattr(BuiltinClient, "stream", counted)
    monkeypatch.setitem(
        registry._services,
        "tool_run",
        lambda *a, **k: (_ for _ in ()).throw(AssertionError("a completed tool call was run again")),
    )
    assert lifecycle.run(execution.pk, worker="second") == "completed"
    resumed = Execution.objects.get(pk=execution.pk)
    assert len(asked) == 1  # only the model call that had not completed
    assert resumed.result["output"] == first.result["output"]


def test_kinds_that_do_not_checkpoint_write_no_step_and_keep_one_attempt(member):
    agent = make_agent(member)
    execution = services.execution_create(
        organization=member.organization,
        actor=member.user,
        kind=ExecutionKind.AGENT_TASK,
        agent=agent,
        definition={"description": "Say hello"},
        enqueue=False,
    )
    assert execution.max_attempts == 1
    assert lifecycle.run(execution.pk, worker="w") == "completed"
    assert not ExecutionStep.objects.filter(execution_id=execution.pk).exists()


def test_request_hash_ignores_key_order_and_sees_every_value():
    assert request_hash({"a": 1, "b": [1, 2]}) == request_hash({"b": [1, 2], "a": 1})
    assert request_hash({"a": 1, "b": [1, 2]}) != request_hash({"a": 1, "b": [2, 1]})


def test_a_run_the_reaper_gave_to_another_worker_stops_on_its_old_worker_without_writing(member):
    """A worker wrongly taken for dead (its liveness key expired while it was starved) finds at its
    next heartbeat that the run is another worker's: it stops it and leaves it alone."""
    from django.conf import settings
    from django_redis import get_redis_connection

    from apps.runs.inflight import alive_key
    from apps.runs.inflight import registry as inflight

    agent = make_agent(member)
    execution = services.execution_create(
        organization=member.organization,
        actor=member.user,
        kind=ExecutionKind.AGENT_TASK,
        agent=agent,
        definition={"description": "hi"},
        enqueue=False,
    )
    services.execution_transition(execution_id=execution.pk, to="PREPARING", worker="new@host (pid 2)", attempts=2)
    services.execution_transition(execution_id=execution.pk, to="RUNNING")
    stale = inflight.add(execution.pk, worker="old@host (pid 1)")  # the old worker still thinks it holds it
    try:
        inflight.beat()
        assert stale.lost and stale.cancel_event.is_set()
        assert get_redis_connection("default").get(alive_key("old@host (pid 1)")) is not None
        assert alive_key("x").startswith(f"{settings.KAI_REDIS_PREFIX}:runs:alive:")
        assert Execution.objects.get(pk=execution.pk).status == "RUNNING"  # the new worker's run goes on
    finally:
        inflight.remove(stale)
