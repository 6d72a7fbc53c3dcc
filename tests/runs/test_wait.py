"""A synchronous caller's side of a run: the run is written in one round trip when no transaction
is open, and the caller waiting for its end is answered from the end's signal (no read of the row)
when the signal carries what it asked for."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.audit.models import AuditEvent
from apps.events.models import Event
from apps.runs import services, transitions
from apps.runs.models import Execution, ExecutionEvent, ExecutionKind, ExecutionStatus
from tests.crews.conftest import make_agent

pytestmark = pytest.mark.django_db(transaction=True)  # autocommit, as a web request runs


def _run(member, agent) -> Execution:
    return services.execution_create(
        organization=member.organization,
        actor=member.user,
        kind=ExecutionKind.AGENT_TEST,
        agent=agent,
        definition={"prompt": "hi"},
        enqueue=False,
    )


def _running(member) -> Execution:
    execution = _run(member, make_agent(member))
    assert services.execution_claim(execution_id=execution.pk, worker="w", attempts=1)[0] == "claimed"
    return execution


def test_a_run_created_outside_a_transaction_is_one_statement_with_its_event(member):
    agent = make_agent(member)
    _run(member, agent)  # warm: caches of the first run
    with CaptureQueriesContext(connection) as queries:
        execution = _run(member, agent)
    writes = [q["sql"] for q in queries.captured_queries if "INSERT" in q["sql"]]
    assert len(writes) == 1, writes  # the run, its history and audit rows and execution.pending: one round trip
    assert "crews_execution" in writes[0] and "events_event" in writes[0]
    assert Execution.objects.get(pk=execution.pk).status == ExecutionStatus.PENDING
    assert list(ExecutionEvent.objects.filter(execution_id=execution.pk).values_list("to_status", flat=True)) == [
        "PENDING"
    ]
    assert AuditEvent.objects.filter(action="execution.create", object_id=str(execution.pk)).count() == 1
    event = Event.objects.get(execution_id=execution.pk)
    assert (event.type, event.actor_id, event.data["status"]) == ("execution.pending", member.user.pk, "PENDING")


def test_a_waiter_is_answered_from_the_end_signal_without_reading_the_row(member):
    execution = _running(member)
    result = {"output": "done", "tokens": 3}
    assert services.execution_transition(execution_id=execution.pk, to="COMPLETED", result=result, error="")
    with CaptureQueriesContext(connection) as queries:
        answered = services.wait_for_terminal(execution_id=execution.pk, timeout=5, only=("result", "error"))
        status, got, error = answered.status, answered.result, answered.error
    assert queries.captured_queries == []
    row = Execution.objects.get(pk=execution.pk)
    assert (status, got, error) == (row.status, row.result, row.error) == ("COMPLETED", result, "")
    assert answered.run_name == row.run_name  # any other field is read from the row when used


def test_a_large_end_signals_its_status_alone_and_the_waiter_reads_the_row(member):
    execution = _running(member)
    result = {"output": "x" * (transitions.SIGNAL_MAX_BYTES + 1)}
    assert services.execution_transition(execution_id=execution.pk, to="COMPLETED", result=result, error="")
    with CaptureQueriesContext(connection) as queries:
        answered = services.wait_for_terminal(execution_id=execution.pk, timeout=5, only=("result", "error"))
    assert len(queries.captured_queries) == 1
    assert (answered.status, answered.result) == ("COMPLETED", result)


def test_an_end_that_did_not_write_the_fields_asked_for_is_read_from_the_row(member):
    execution = _running(member)
    assert services.execution_transition(execution_id=execution.pk, to="FAILED", error="broken")  # no result
    with CaptureQueriesContext(connection) as queries:
        answered = services.wait_for_terminal(execution_id=execution.pk, timeout=5, only=("result", "error"))
    assert len(queries.captured_queries) == 1
    assert (answered.status, answered.error, answered.result) == ("FAILED", "broken", None)
