"""The fired task: one execution per tick, whatever the number of beats, deliveries or threads."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from apps.events.models import Event
from apps.runs.models import Execution
from apps.scheduler import tasks
from apps.scheduler.models import Schedule
from apps.scheduler.services import schedule_fire, schedule_toggle


def utc(*args):
    return datetime(*args, tzinfo=UTC)


@pytest.mark.django_db
def test_fire_twice_for_the_same_tick_creates_one_execution(make_schedule):
    schedule = make_schedule(cron_expression="*/5 * * * *")
    first = tasks.fire(str(schedule.pk), now=utc(2026, 5, 1, 10, 5, 1).isoformat())
    again = tasks.fire(str(schedule.pk), now=utc(2026, 5, 1, 10, 6, 30).isoformat())  # a redelivery / second beat
    assert first["outcome"] == "fired" and first["tick"] == "2026-05-01T10:05:00Z"
    assert again["outcome"] == "duplicate" and again["execution_id"] == first["execution_id"]
    execution = Execution.objects.get()
    assert execution.dedupe_key == f"schedule:{schedule.pk}:2026-05-01T10:05:00Z"
    assert execution.kind == "crew" and execution.inputs == {"topic": "AI"} and execution.status == "PENDING"
    schedule.refresh_from_db()
    assert schedule.last_execution_id == execution.pk and schedule.last_run_at == utc(2026, 5, 1, 10, 5, 1)
    fired = Event.objects.filter(type="schedule.fired").get()
    assert fired.data["tick"] == "2026-05-01T10:05:00Z" and fired.execution_id == execution.pk

    nxt = tasks.fire(str(schedule.pk), now=utc(2026, 5, 1, 10, 10, 0).isoformat())
    assert nxt["outcome"] == "fired" and Execution.objects.count() == 2


@pytest.mark.django_db
def test_fire_for_an_agent_task(make_schedule, agent):
    schedule = make_schedule(
        target_type="agent_task",
        crew=None,
        agent=agent.pk,
        task={"description": "Sum up {topic}", "expected_output": "One line"},
    )
    result = schedule_fire(schedule_id=schedule.pk, now=utc(2026, 5, 1, 9, 0, 3))
    execution = Execution.objects.get(pk=result.execution_id)
    assert execution.kind == "agent_task" and execution.agent_id == agent.pk
    assert execution.definition["description"] == "Sum up {topic}"


@pytest.mark.django_db
def test_disabled_schedule_fires_nothing(make_schedule, member):
    schedule = make_schedule(cron_expression="* * * * *")
    schedule = schedule_toggle(schedule=schedule, actor=member.user)
    assert schedule.enabled is False and schedule.periodic_task.enabled is False
    assert tasks.fire(str(schedule.pk))["outcome"] == "disabled"
    assert not Execution.objects.exists()


@pytest.mark.django_db
def test_deleted_schedule_fires_nothing_and_drops_an_orphaned_beat_entry(make_schedule):
    from django_celery_beat.models import PeriodicTask

    schedule = make_schedule(cron_expression="* * * * *")
    periodic_id = schedule.periodic_task_id
    Schedule.objects.filter(pk=schedule.pk).delete()  # e.g. its organization was deleted
    assert tasks.fire(str(schedule.pk))["outcome"] == "missing"
    assert not PeriodicTask.objects.filter(pk=periodic_id).exists() and not Execution.objects.exists()


@pytest.mark.django_db
def test_misfire_policies_after_downtime(make_schedule):
    # hourly; beat was down from 10:00 to 13:20, so 11:00, 12:00 and 13:00 were missed
    run_once = make_schedule(cron_expression="0 * * * *", misfire_policy="run_once")
    skip = make_schedule(cron_expression="0 * * * *", misfire_policy="skip")
    late = utc(2026, 5, 1, 13, 20)
    result = schedule_fire(schedule_id=run_once.pk, now=late)
    assert result.outcome == "fired" and result.tick == "2026-05-01T13:00:00Z"
    assert Execution.objects.filter(dedupe_key__startswith=f"schedule:{run_once.pk}:").count() == 1
    assert schedule_fire(schedule_id=run_once.pk, now=late + timedelta(minutes=1)).outcome == "duplicate"

    assert schedule_fire(schedule_id=skip.pk, now=late).outcome == "misfire_skipped"
    assert schedule_fire(schedule_id=skip.pk, now=late + timedelta(minutes=1)).outcome == "duplicate"
    assert not Execution.objects.filter(dedupe_key__startswith=f"schedule:{skip.pk}:").exists()
    assert Event.objects.filter(type="schedule.misfired", data__schedule_id=str(skip.pk)).exists()
    # on time again: the skip schedule runs its next tick
    assert schedule_fire(schedule_id=skip.pk, now=utc(2026, 5, 1, 14, 0, 1)).outcome == "fired"


@pytest.mark.django_db
def test_fire_at_the_dst_gap_uses_the_local_tick(make_schedule):
    schedule = make_schedule(cron_expression="0 2 * * *", timezone="Europe/Berlin")
    # beat fires at 03:00 CEST (01:00 UTC) for the 02:00 that did not exist on 2027-03-28
    result = schedule_fire(schedule_id=schedule.pk, now=utc(2027, 3, 28, 1, 0, 1))
    assert result.outcome == "fired" and result.tick == "2027-03-28T01:00:00Z"


@pytest.mark.django_db(transaction=True)
def test_concurrent_fires_of_one_tick_create_one_execution(make_schedule):
    schedule = make_schedule(cron_expression="*/5 * * * *")
    now = utc(2026, 5, 1, 10, 5, 2)
    barrier = threading.Barrier(4)
    results, errors = [], []

    def fire():
        try:
            barrier.wait(5)
            results.append(schedule_fire(schedule_id=schedule.pk, now=now))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=fire) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert sorted(r.outcome for r in results) == ["duplicate", "duplicate", "duplicate", "fired"]
    assert len({r.execution_id for r in results}) == 1
    assert Execution.objects.filter(dedupe_key__startswith=f"schedule:{schedule.pk}:").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_fire_commits_its_run_and_both_events_in_one_statement_at_the_end(make_schedule, agent):
    """The schedule is written before the run (its last_execution is checked at commit) and the
    run's execution.pending and schedule.fired are inserted together, in that order."""
    schedule = make_schedule(
        target_type="agent_task",
        crew=None,
        agent=agent.pk,
        task={"description": "Sum up {topic}", "expected_output": "One line"},
    )
    result = tasks.fire(str(schedule.pk), now=utc(2026, 5, 1, 9, 0, 3).isoformat())
    assert result["outcome"] == "fired"
    schedule.refresh_from_db()
    assert str(schedule.last_execution_id) == result["execution_id"]
    assert schedule.last_tick_at == utc(2026, 5, 1, 9, 0) and schedule.last_run_at == utc(2026, 5, 1, 9, 0, 3)
    events = list(Event.objects.filter(execution_id=result["execution_id"]).order_by("id").values_list("id", "type"))
    assert [t for _, t in events] == ["execution.pending", "schedule.fired"]
    assert events[1][0] == events[0][0] + 1
    assert tasks.fire(str(schedule.pk), now=utc(2026, 5, 1, 9, 0, 30).isoformat())["outcome"] == "duplicate"
