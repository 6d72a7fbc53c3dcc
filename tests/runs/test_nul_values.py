"""A NUL character from outside the platform (a model, a tool, an exception's message) cannot be
stored by PostgreSQL; the run engine stores it as U+FFFD instead of failing the write."""

import pytest

from apps.events.models import Event
from apps.runs.models import Execution, ExecutionLog, ExecutionStatus
from apps.runs.recorder import RunRecorder
from apps.runs.services import execution_create, execution_transition
from apps.runs.transitions import execution_transition_many
from kai_platform.db.nul import without_nul
from tests.crews.conftest import make_agent

pytestmark = pytest.mark.django_db(transaction=True)


def test_without_nul_replaces_in_strings_keys_and_containers_and_copies_nothing_clean():
    clean = {"a": ["b", ("c", 1)], "n": None}
    assert without_nul(clean) is clean
    assert without_nul({"k\x00": ["x\x00y", ("\x00",)], "n": 2}) == {"k\ufffd": ["x\ufffdy", ("\ufffd",)], "n": 2}


def _running(member):
    agent = make_agent(member, llm="builtin")
    run = execution_create(
        organization=member.organization, actor=member.user, kind="agent_task", agent=agent, enqueue=False
    )
    Execution.objects.filter(pk=run.pk).update(status=ExecutionStatus.RUNNING)
    return run


def test_logs_spans_and_a_runs_end_store_nul_as_the_replacement_character(make_member):
    member = make_member(plan="enterprise")
    run = _running(member)
    recorder = RunRecorder(execution_id=run.pk, organization_id=run.organization_id, trace_id=run.trace_id)
    recorder.log("read \x00 bytes", chunk="a\x00b")
    span = recorder.span_start("tool", "file_reader")
    recorder.span_end(span, output="x\x00y")
    assert recorder.flush() is True
    log = ExecutionLog.objects.get(execution=run, message__startswith="read")
    assert (log.message, log.data) == ("read \ufffd bytes", {"chunk": "a\ufffdb"})
    assert execution_transition(
        execution_id=run.pk, to="FAILED", reason="tool said \x00", error="e\x00", result={"text": "r\x00"}
    )
    run.refresh_from_db()
    assert (run.status, run.error, run.result) == ("FAILED", "e\ufffd", {"text": "r\ufffd"})
    assert Event.objects.get(execution_id=run.pk, type="execution.failed").data["reason"] == "tool said \ufffd"


def test_a_batched_end_stores_nul_as_the_replacement_character(make_member):
    member = make_member(plan="enterprise")
    runs = [_running(member) for _ in range(2)]
    moved = execution_transition_many(
        organization_id=member.organization.pk,
        to="COMPLETED",
        runs=[(run.pk, "done \x00", {"result": {"text": f"{i}\x00"}}) for i, run in enumerate(runs)],
    )
    assert moved == {str(run.pk) for run in runs}
    assert sorted(Execution.objects.filter(pk__in=[r.pk for r in runs]).values_list("result", flat=True), key=str) == [
        {"text": "0\ufffd"},
        {"text": "1\ufffd"},
    ]
