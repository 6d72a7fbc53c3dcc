"""A synchronous call's run is created by a commit that does not wait for the WAL flush (the run's
end commits later in the WAL, flushed, before the call answers); every other create waits for it.
Either way the run, its history, audit row and ``execution.pending`` are written together, and the
session's own setting is left as it was."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from apps.agents import calls
from apps.audit.models import AuditEvent
from apps.audit.services import audit_row
from apps.events.models import Event
from apps.runs.models import Execution, ExecutionEvent
from apps.runs.services import NO_FLUSH_WAIT, execution_create
from kai_platform.db.statements import insert_statement
from tests.crews.conftest import make_agent

pytestmark = pytest.mark.django_db(transaction=True)  # outside a transaction, as a request is


def _create(member, agent, **kwargs) -> tuple[Execution, list[str]]:
    with CaptureQueriesContext(connection) as ctx:
        execution = execution_create(
            organization=member.organization,
            actor=member.user,
            kind="agent_test",
            agent=agent,
            definition={"prompt": "hi"},
            enqueue=False,
            **kwargs,
        )
    return execution, [query["sql"] for query in ctx.captured_queries]


def _setting() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


def _written(execution: Execution) -> bool:
    return (
        Execution.objects.filter(pk=execution.pk, status="PENDING").exists()
        and ExecutionEvent.objects.filter(execution_id=execution.pk, to_status="PENDING").exists()
        and AuditEvent.objects.filter(action="execution.create", object_id=str(execution.pk)).exists()
        and Event.objects.filter(type="execution.pending", execution_id=execution.pk).exists()
    )


def test_a_create_that_need_not_be_durable_skips_the_flush_wait_of_its_own_commit_only(member):
    agent = make_agent(member, llm="builtin")
    before = _setting()
    execution, sql = _create(member, agent, durable=False)
    assert sql[-1].startswith(NO_FLUSH_WAIT) and sum(NO_FLUSH_WAIT.strip() in s for s in sql) == 1
    assert _written(execution) and _setting() == before == "on"

    execution, sql = _create(member, agent)  # the default: a durable create
    assert not any("synchronous_commit" in s for s in sql) and _written(execution)

    with transaction.atomic():  # in a caller's transaction: the caller's commit, left alone
        execution, sql = _create(member, agent, durable=False)
    assert not any("synchronous_commit" in s for s in sql) and _written(execution)
    assert _setting() == "on"


def test_only_the_synchronous_call_creates_its_run_without_waiting_for_the_flush(member, monkeypatch):
    agent = make_agent(member, llm="builtin")
    seen = {}

    def create(**kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop here")

    monkeypatch.setattr(calls, "execution_create", create)
    with pytest.raises(RuntimeError):
        calls.agent_call(agent=agent, actor=member.user, prompt="hi")
    assert seen["durable"] is False
    seen.clear()
    with pytest.raises(RuntimeError):
        calls.agent_call_start(agent=agent, actor=member.user, kind="agent_task", definition={})
    assert "durable" not in seen  # every other start: the default, durable


def test_a_callers_statements_are_written_with_the_run_in_its_round_trip(member):
    agent = make_agent(member, llm="builtin")

    def also_write(execution):
        row = audit_row(organization=member.organization, actor=member.user, action="x.call", instance=execution)
        return [insert_statement(row)]

    for durable in (False, True):
        execution, sql = _create(member, agent, durable=durable, also_write=also_write)
        # one round trip: the run, its history and audit rows, the caller's row, the event
        assert "x.call" in sql[-1] and "execution.pending" in sql[-1] and not any("x.call" in s for s in sql[:-1])
        assert _written(execution)
        assert AuditEvent.objects.filter(action="x.call", object_id=str(execution.pk)).exists()
