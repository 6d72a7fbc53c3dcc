"""The runs worker's intake: runs taken at the same time are loaded in one query and claimed in
one statement per organization (apps.runs.intake), with the transitions, events and audit a run
claimed alone gets; two claimers never take the same run; a cancel requested while queued wins."""

from __future__ import annotations

import threading

import pytest
from django.conf import settings

from apps.audit.models import AuditEvent
from apps.events.models import Event
from apps.runs import lifecycle, services
from apps.runs.intake import claim_many
from apps.runs.models import Execution, ExecutionEvent, ExecutionKind
from kai_platform.celery import app
from tests.crews import conftest as crews_conftest
from tests.crews.conftest import make_agent, wait_for

pytestmark = pytest.mark.django_db(transaction=True)
runs_worker = crews_conftest.runs_worker


def _create(member, agent, n: int, **fields) -> list[Execution]:
    return [
        services.execution_create(
            organization=member.organization,
            actor=member.user,
            kind=ExecutionKind.AGENT_TASK,
            agent=agent,
            definition={"description": f"say {i}"},
            enqueue=False,
            **fields,
        )
        for i in range(n)
    ]


def _claim_trail(execution_id) -> tuple[list, list]:
    history = list(
        ExecutionEvent.objects.filter(execution_id=execution_id)
        .order_by("id")
        .values_list("from_status", "to_status", "reason")
    )
    events = list(Event.objects.filter(execution_id=execution_id).order_by("id").values_list("type", "data"))
    return history, events


def _without_worker(trail: tuple[list, list], worker: str) -> tuple[list, list]:
    """A trail with the claiming worker's name and the run's id taken out (they differ by design)."""
    history, events = trail
    history = [(f, t, r.replace(worker, "<worker>")) for f, t, r in history]
    events = [(t, {**d, "execution_id": "<id>", "reason": d["reason"].replace(worker, "<worker>")}) for t, d in events]
    return history, events


def test_a_batched_claim_records_and_publishes_what_a_lone_claim_does(member):
    agent = make_agent(member)
    alone, *batch = _create(member, agent, 4)
    assert (
        services.execution_claim(execution_id=alone.pk, worker="w@h", attempts=1, cap=(member.organization.pk, 100))[0]
        == "claimed"
    )
    outcomes = claim_many(
        organization_id=member.organization.pk, execution_ids=[e.pk for e in batch], worker="w@h", cap=100
    )
    assert outcomes == {str(e.pk): "claimed" for e in batch}
    expected = _without_worker(_claim_trail(alone.pk), "w@h")
    ids = []
    for execution in sorted(batch, key=lambda e: e.pk):  # claimed in id order
        execution.refresh_from_db()
        assert (execution.status, execution.worker, execution.attempts) == ("RUNNING", "w@h", 1)
        assert execution.started_at and execution.heartbeat_at
        trail = _claim_trail(execution.pk)
        assert _without_worker(trail, "w@h") == expected
        assert trail[1][1][1]["execution_id"] == str(execution.pk)
        ids += list(
            Event.objects.filter(execution_id=execution.pk, type__in=["execution.preparing", "execution.running"])
            .order_by("id")
            .values_list("id", flat=True)
        )
    # each run's two events in step order, the runs one after another
    assert ids == sorted(ids)
    # a second claim of any of them loses cleanly and publishes nothing
    assert claim_many(organization_id=member.organization.pk, execution_ids=[batch[0].pk], worker="x", cap=None) == {
        str(batch[0].pk): "lost"
    }
    assert Event.objects.filter(execution_id=batch[0].pk).count() == 3


def test_a_batched_claim_keeps_the_organizations_cap_highest_priority_first(member):
    agent = make_agent(member)
    runs = _create(member, agent, 3) + _create(member, agent, 2, priority=9)
    outcomes = claim_many(organization_id=member.organization.pk, execution_ids=[e.pk for e in runs], worker="w", cap=2)
    assert sorted(outcomes.values()) == ["claimed", "claimed", "over_cap", "over_cap", "over_cap"]
    assert {k for k, v in outcomes.items() if v == "claimed"} == {str(e.pk) for e in runs[3:]}
    assert Execution.objects.filter(pk__in=[e.pk for e in runs[:3]], status="PENDING", worker="").count() == 3
    assert ExecutionEvent.objects.filter(execution_id__in=[e.pk for e in runs[:3]]).count() == 3  # "created" only


def test_two_claimers_never_claim_the_same_run(member):
    agent = make_agent(member)
    runs = _create(member, agent, 40)
    ids = [e.pk for e in runs]
    results: dict[str, list] = {}
    barrier = threading.Barrier(3)

    def batched(name):
        from django.db import connection

        barrier.wait()
        try:
            results[name] = [
                k
                for k, v in claim_many(
                    organization_id=member.organization.pk, execution_ids=ids, worker=name, cap=1000
                ).items()
                if v == "claimed"
            ]
        finally:
            connection.close()

    def lone():
        from django.db import connection

        barrier.wait()
        try:
            results["lone"] = [
                str(pk)
                for pk in reversed(ids)
                if services.execution_claim(execution_id=pk, worker="lone", attempts=1)[0] == "claimed"
            ]
        finally:
            connection.close()

    threads = [threading.Thread(target=batched, args=(name,)) for name in ("a", "b")] + [threading.Thread(target=lone)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    claimed = [pk for name in ("a", "b", "lone") for pk in results[name]]
    assert sorted(claimed) == sorted(str(pk) for pk in ids)  # every run once, by one of them
    for execution in Execution.objects.filter(pk__in=ids):
        owner = next(name for name in ("a", "b", "lone") if str(execution.pk) in results[name])
        assert (execution.status, execution.worker) == ("RUNNING", owner)
        assert ExecutionEvent.objects.filter(execution_id=execution.pk).count() == 3
        assert Event.objects.filter(execution_id=execution.pk).count() == 3


def test_a_run_whose_cancel_was_requested_while_queued_is_cancelled_not_claimed(member):
    agent = make_agent(member)
    flagged, other = _create(member, agent, 2)
    Execution.objects.filter(pk=flagged.pk).update(cancel_requested=True)  # asked while no worker held it
    assert claim_many(
        organization_id=member.organization.pk, execution_ids=[flagged.pk, other.pk], worker="w", cap=None
    ) == {str(flagged.pk): "lost", str(other.pk): "claimed"}
    assert lifecycle.run(flagged.pk, worker="w") == "cancelled"
    flagged.refresh_from_db()
    assert flagged.status == "CANCELLED"
    assert list(
        ExecutionEvent.objects.filter(execution_id=flagged.pk).order_by("id").values_list("to_status", flat=True)
    ) == ["PENDING", "CANCELLED"]


def test_runs_the_worker_takes_together_run_as_runs_taken_alone(runs_worker, member):
    """The real worker: runs queued while it does not consume are taken at once when it does
    (batched: several share one claim statement), and each ends as a lone run ends."""
    agent = make_agent(member, llm="builtin")
    alone = _create(member, agent, 1)[0]
    services.execution_enqueue(execution_id=alone.pk)
    wait_for(lambda: Execution.objects.filter(pk=alone.pk, status="COMPLETED").exists(), 60, message="the lone run")
    app.control.cancel_consumer(settings.KAI_RUNS_QUEUE, destination=[runs_worker.node], reply=True, timeout=30)
    try:
        runs = _create(member, agent, 6)
        cancelled = runs.pop()
        for execution in [*runs, cancelled]:
            services.execution_enqueue(execution_id=execution.pk)
        services.execution_cancel(execution=cancelled, actor=member.user)  # while queued
    finally:
        app.control.add_consumer(settings.KAI_RUNS_QUEUE, destination=[runs_worker.node], reply=True, timeout=30)
    ids = [e.pk for e in runs]
    wait_for(
        lambda: Execution.objects.filter(pk__in=ids, status="COMPLETED").count() == len(ids),
        60,
        message="the batch's runs to complete",
    )
    runs_worker.wait_idle()
    started = list(Execution.objects.filter(pk__in=ids).values_list("started_at", flat=True))
    assert len(set(started)) < len(started)  # claimed together: one statement, one timestamp
    alone.refresh_from_db()
    expected = [
        t
        for *_, t in ExecutionEvent.objects.filter(execution_id=alone.pk)
        .order_by("id")
        .values_list("from_status", "to_status")
    ]
    expected_types = list(Event.objects.filter(execution_id=alone.pk).order_by("id").values_list("type", flat=True))
    for pk in ids:
        execution = Execution.objects.get(pk=pk)
        assert (execution.attempts, execution.worker, bool(execution.result)) == (
            alone.attempts,
            alone.worker,
            bool(alone.result),
        )
        assert [
            t
            for *_, t in ExecutionEvent.objects.filter(execution_id=pk)
            .order_by("id")
            .values_list("from_status", "to_status")
        ] == expected
        assert (
            list(Event.objects.filter(execution_id=pk).order_by("id").values_list("type", flat=True)) == expected_types
        )
        assert AuditEvent.objects.filter(action="execution.create", object_id=str(pk)).count() == 1
        assert execution.tokens_out == alone.tokens_out and execution.tokens_out > 0
    cancelled.refresh_from_db()
    assert cancelled.status == "CANCELLED" and cancelled.started_at is None


def _context(execution):
    from apps.runs.inflight import RunHandle
    from apps.runs.runner import RunContext

    ctx = RunContext(
        Execution.objects.select_related("organization", "agent").get(pk=execution.pk), RunHandle(str(execution.pk))
    )
    ctx.recorder.log("agent started", agent="a")
    span = ctx.recorder.span_start("llm", "builtin", model="builtin")
    ctx.recorder.tokens(tokens_in=3, tokens_out=5, cost=0)
    ctx.recorder.span_end(span)
    ctx.recorder.usage(agent_id=execution.agent_id, agent_name="A", model="builtin", tokens_in=3, tokens_out=5, cost=0)
    ctx.recorder.log("completed")
    return ctx


def _end_trail(execution_id) -> tuple:
    from apps.runs.models import ExecutionLog, TraceSpan

    execution = Execution.objects.get(pk=execution_id)
    return (
        execution.status,
        execution.result,
        execution.tokens_in,
        execution.tokens_out,
        execution.log_seq,
        list(ExecutionLog.objects.filter(execution_id=execution_id).order_by("seq").values_list("seq", "message")),
        TraceSpan.objects.filter(execution_id=execution_id).count(),
        [
            t
            for *_, t in ExecutionEvent.objects.filter(execution_id=execution_id)
            .order_by("id")
            .values_list("from_status", "to_status")
        ],
        list(Event.objects.filter(execution_id=execution_id).order_by("id").values_list("type", flat=True)),
    )


def test_runs_ended_together_record_what_a_run_ended_alone_does(member):
    from django.db import transaction

    from apps.runs.completion import _complete_batch
    from apps.runs.models import UsageRollup

    agent = make_agent(member)
    alone, *batch = _create(member, agent, 4)
    claim_many(
        organization_id=member.organization.pk, execution_ids=[e.pk for e in [alone, *batch]], worker="w", cap=None
    )
    ctx = _context(alone)
    with transaction.atomic():  # the way a run always ended alone
        ctx.recorder.flush()
        services.execution_transition(execution_id=alone.pk, to="COMPLETED", reason="completed", result="hi", error="")
    assert _complete_batch([(_context(e), "hi") for e in batch]) == [True, True, True]
    expected = _end_trail(alone.pk)
    assert expected[0] == "COMPLETED" and expected[4] == 2 and expected[6] == 1
    for execution in batch:
        assert _end_trail(execution.pk) == expected
    rollup = UsageRollup.objects.get(organization=member.organization, agent_id=agent.pk, model="builtin")
    assert (rollup.executions, rollup.llm_calls, rollup.tokens_in, rollup.tokens_out) == (4, 4, 12, 20)


def test_a_batch_of_ends_is_one_transition_statement_and_skips_a_run_ended_elsewhere(member):
    """``execution_transition_many``: the runs still RUNNING end in one statement, with the history
    row, event and data a lone transition writes; one cancelled meanwhile is left as it is."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    agent = make_agent(member)
    runs = _create(member, agent, 3)
    claim_many(organization_id=member.organization.pk, execution_ids=[e.pk for e in runs], worker="w", cap=None)
    services.execution_transition(execution_id=runs[1].pk, to="CANCELLED", reason="cancelled by user")
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        moved = services.execution_transition_many(
            organization_id=member.organization.pk,
            to="COMPLETED",
            runs=[(e.pk, "completed", {"result": {"n": i}, "error": ""}) for i, e in enumerate(runs)],
        )
    assert moved == {str(runs[0].pk), str(runs[2].pk)}
    assert len([q for q in queries.captured_queries if "UPDATE crews_execution" in q["sql"]]) == 1
    for index in (0, 2):
        run = Execution.objects.get(pk=runs[index].pk)
        assert (run.status, run.result, run.error, run.completed_at is not None) == (
            "COMPLETED",
            {"n": index},
            "",
            True,
        )
        assert list(ExecutionEvent.objects.filter(execution_id=run.pk).order_by("id").values_list("to_status"))[-1] == (
            "COMPLETED",
        )
        event = Event.objects.filter(execution_id=run.pk).order_by("id").last()
        assert event.type == "execution.completed" and event.data == {
            "execution_id": str(run.pk),
            "kind": run.kind,
            "from": "RUNNING",
            "to": "COMPLETED",
            "status": "COMPLETED",
            "reason": "completed",
            "agent_id": str(agent.pk),
        }
    assert Execution.objects.get(pk=runs[1].pk).status == "CANCELLED"
    assert not Event.objects.filter(execution_id=runs[1].pk, type="execution.completed").exists()


def test_a_failed_batch_of_ends_gives_each_run_its_entries_back(member, monkeypatch):
    from django.db import DatabaseError

    from apps.runs import completion
    from apps.runs.models import ExecutionLog

    agent = make_agent(member)
    runs = _create(member, agent, 2)
    claim_many(organization_id=member.organization.pk, execution_ids=[e.pk for e in runs], worker="w", cap=None)
    contexts = [_context(e) for e in runs]
    pending = [c.recorder.pending() for c in contexts]

    def broken(**kwargs):  # the transitions fail at the server, after the last batches' statements ran
        return "SELECT 1 / 0", []

    monkeypatch.setattr(completion, "transition_many_statement", broken)
    with pytest.raises(DatabaseError):
        completion._complete_batch([(c, "hi") for c in contexts])
    assert [c.recorder.pending() for c in contexts] == pending
    assert ExecutionLog.objects.filter(execution_id__in=[e.pk for e in runs]).count() == 0
    assert set(Execution.objects.filter(pk__in=[e.pk for e in runs]).values_list("status", "tokens_out")) == {
        ("RUNNING", 0)
    }
    monkeypatch.undo()
    assert completion._complete_batch([(c, "hi") for c in contexts]) == [True, True]  # nothing was lost
    assert ExecutionLog.objects.filter(execution_id__in=[e.pk for e in runs]).count() == 4


def test_as_many_runs_ending_at_once_as_the_pool_has_connections_all_end(member):
    """Each run's thread gives its connection back before it waits for the batch that ends it: as
    many threads as the pool has connections, each holding one, hand their runs to the batch, whose
    own connection comes from the same pool."""
    from django.db import connection

    from apps.runs.completion import complete

    agent = make_agent(member)
    # with the test's own connection, these threads hold every connection of the pool
    max_size = settings.DATABASES["default"]["OPTIONS"]["pool"]["max_size"]
    runs = _create(member, agent, max_size - 1)
    claim_many(organization_id=member.organization.pk, execution_ids=[e.pk for e in runs], worker="w", cap=None)
    contexts = [_context(e) for e in runs]
    answers: list = []
    errors: list = []
    barrier = threading.Barrier(len(contexts))
    # every connection opened before the threads ask: what is tested is a full pool, not how fast
    # a cold pool grows on a loaded machine (one connection at a time, past the 10 s busy wait)
    pool = connection.pool
    min_size = pool.min_size
    pool.resize(min_size=max_size, max_size=max_size)
    pool.wait(60)

    def end(ctx):
        try:
            assert Execution.objects.filter(pk=ctx.execution.pk).exists()  # this thread now holds a connection
            barrier.wait(30)
            answers.append(complete(ctx, "hi"))
        except Exception as exc:
            errors.append(repr(exc))
        finally:
            connection.close()

    try:
        threads = [threading.Thread(target=end, args=(ctx,)) for ctx in contexts]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        pool.resize(min_size=min_size, max_size=max_size)
    assert errors == []
    assert answers == [True] * len(runs)
    assert Execution.objects.filter(pk__in=[e.pk for e in runs], status="COMPLETED").count() == len(runs)
