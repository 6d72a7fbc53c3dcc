"""Schedules over the API: CRUD with the beat entry kept in step, validation, roles, next runs, run-now."""

import json

import pytest
from django_celery_beat.models import PeriodicTask

from apps.runs.models import Execution
from apps.scheduler.models import Schedule
from tests.crews.conftest import make_agent, make_crew
from tests.helpers import assert_envelope

pytestmark = pytest.mark.django_db

URL = "/api/v1/scheduler/schedules"


def periodic_of(schedule_id) -> PeriodicTask:
    return Schedule.objects.select_related("periodic_task__crontab").get(pk=schedule_id).periodic_task


def test_crud_keeps_the_periodic_task_in_step(owner_client, crew):
    body = {
        "name": "Daily Reports",
        "cron_expression": "0 9 * * 1-5",
        "timezone": "Europe/Berlin",
        "crew_id": str(crew.pk),
        "inputs": {"topic": "AI"},
        "enabled": True,
    }
    response = owner_client.post(URL, body, format="json")
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["target_type"] == "crew" and data["crew_id"] == str(crew.pk) and data["enabled"] is True
    assert data["misfire_policy"] == "run_once" and data["last_execution"] is None and data["next_run_at"]
    periodic = periodic_of(data["id"])
    assert periodic.task == "scheduler.fire" and json.loads(periodic.args) == [data["id"]]
    assert periodic.enabled is True
    crontab = periodic.crontab
    assert (crontab.minute, crontab.hour, crontab.day_of_month, crontab.month_of_year, crontab.day_of_week) == (
        "0",
        "9",
        "*",
        "*",
        "1-5",
    )
    assert str(crontab.timezone) == "Europe/Berlin"

    listing = owner_client.get(URL).json()
    assert listing["total"] == 1 and listing["items"][0]["id"] == data["id"]

    response = owner_client.put(
        f"{URL}/{data['id']}", {"cron_expression": "*/10 * * * *", "timezone": "UTC", "enabled": False}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["name"] == "Daily Reports"  # PUT is partial
    periodic = periodic_of(data["id"])
    assert periodic.enabled is False and periodic.crontab.minute == "*/10" and str(periodic.crontab.timezone) == "UTC"

    response = owner_client.patch(f"{URL}/{data['id']}/toggle")
    assert response.status_code == 200 and response.json()["enabled"] is True
    assert periodic_of(data["id"]).enabled is True
    response = owner_client.post(f"{URL}/{data['id']}/toggle", {"enabled": False}, format="json")
    assert response.status_code == 200 and response.json()["enabled"] is False
    assert periodic_of(data["id"]).enabled is False

    periodic_id = periodic.pk
    assert owner_client.delete(f"{URL}/{data['id']}").status_code == 204
    assert not Schedule.objects.filter(pk=data["id"]).exists()
    assert not PeriodicTask.objects.filter(pk=periodic_id).exists()


def test_agent_task_schedule(owner_client, agent):
    body = {
        "name": "Triage",
        "cron_expression": "*/5 * * * *",
        "target_type": "agent_task",
        "agent_id": str(agent.pk),
        "task": {"description": "Triage the inbox", "expected_output": "A list"},
    }
    response = owner_client.post(URL, body, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["agent_id"] == str(agent.pk) and response.json()["crew_id"] is None
    bad = owner_client.post(URL, {**body, "task": {}}, format="json")
    assert any(e["field"] == "task" for e in assert_envelope(bad, 400)["errors"])


@pytest.mark.parametrize("expression", ["61 * * * *", "* * * *", "0 0 * * * *", "every day", "0 0 * * 1#2"])
def test_invalid_cron_is_a_400_naming_the_field(owner_client, crew, expression):
    response = owner_client.post(
        URL, {"name": "x", "cron_expression": expression, "crew_id": str(crew.pk)}, format="json"
    )
    body = assert_envelope(response, 400, "GENERAL_001")
    assert [e["field"] for e in body["errors"]] == ["cron_expression"]
    assert not Schedule.objects.exists() and not PeriodicTask.objects.filter(task="scheduler.fire").exists()


def test_invalid_cron_on_update_leaves_everything_as_it_was(owner_client, make_schedule):
    schedule = make_schedule()
    response = owner_client.put(f"{URL}/{schedule.pk}", {"cron_expression": "0 25 * * *"}, format="json")
    assert [e["field"] for e in assert_envelope(response, 400)["errors"]] == ["cron_expression"]
    assert periodic_of(schedule.pk).crontab.hour == "9"


def test_bad_timezone_is_a_400(owner_client, crew):
    response = owner_client.post(
        URL,
        {"name": "x", "cron_expression": "0 9 * * *", "timezone": "Mars/Base", "crew_id": str(crew.pk)},
        format="json",
    )
    assert [e["field"] for e in assert_envelope(response, 400)["errors"]] == ["timezone"]


def test_another_organizations_crew_or_agent_is_a_400(owner_client, make_member):
    other = make_member("owner")
    foreign_crew, foreign_agent = make_crew(other), make_agent(other)
    response = owner_client.post(
        URL, {"name": "x", "cron_expression": "0 9 * * *", "crew_id": str(foreign_crew.pk)}, format="json"
    )
    assert [e["field"] for e in assert_envelope(response, 400)["errors"]] == ["crew_id"]
    response = owner_client.post(
        URL,
        {
            "name": "x",
            "cron_expression": "0 9 * * *",
            "target_type": "agent_task",
            "agent_id": str(foreign_agent.pk),
            "task": {"description": "d"},
        },
        format="json",
    )
    assert [e["field"] for e in assert_envelope(response, 400)["errors"]] == ["agent_id"]


def test_a_workflow_schedule_needs_workflow_id(owner_client):
    response = owner_client.post(
        URL, {"name": "x", "cron_expression": "0 9 * * *", "target_type": "workflow"}, format="json"
    )
    body = assert_envelope(response, 400)
    assert body["errors"][0]["field"] == "workflow_id" and "needs workflow_id" in body["errors"][0]["message"]


def test_missing_target_and_unknown_fields(owner_client, crew):
    response = owner_client.post(URL, {"name": "x", "cron_expression": "0 9 * * *"}, format="json")
    assert [e["field"] for e in assert_envelope(response, 400)["errors"]] == ["crew_id"]
    response = owner_client.post(
        URL, {"name": "x", "cron_expression": "0 9 * * *", "crew_id": str(crew.pk), "cron": "x"}, format="json"
    )
    assert [e["field"] for e in assert_envelope(response, 400)["errors"]] == ["cron"]


def test_a_crew_schedule_whose_inputs_leave_a_placeholder_unfilled_is_refused(owner_client, crew, make_schedule):
    """A scheduled run would be refused for a missing input (as CrewAI refuses to start), so the
    schedule is refused when it is written, naming every missing placeholder."""
    response = owner_client.post(
        URL, {"name": "x", "cron_expression": "0 9 * * *", "crew_id": str(crew.pk), "inputs": {}}, format="json"
    )
    errors = assert_envelope(response, 400)["errors"]
    assert [e["field"] for e in errors] == ["inputs"] and "{topic}" in errors[0]["message"]
    schedule = make_schedule()
    response = owner_client.patch(f"{URL}/{schedule.pk}", {"inputs": {"other": 1}}, format="json")
    assert "{topic}" in assert_envelope(response, 400)["errors"][0]["message"]
    assert Schedule.objects.get(pk=schedule.pk).inputs == {"topic": "AI"}


def test_next_runs_in_the_schedules_zone_and_utc(member, client_for, make_schedule, time_machine):
    time_machine.move_to("2027-03-26T12:00:00Z", tick=False)
    owner_client = client_for(member)  # a token issued at the moved time
    schedule = make_schedule(cron_expression="0 2 * * *", timezone="Europe/Berlin")
    response = owner_client.get(f"{URL}/{schedule.pk}/next-runs?count=3")
    assert response.status_code == 200, response.content
    assert response.json()["next_runs"] == [
        {"at": "2027-03-27T02:00:00+01:00", "at_utc": "2027-03-27T01:00:00Z"},
        {"at": "2027-03-28T03:00:00+02:00", "at_utc": "2027-03-28T01:00:00Z"},
        {"at": "2027-03-29T02:00:00+02:00", "at_utc": "2027-03-29T00:00:00Z"},
    ]
    assert_envelope(owner_client.get(f"{URL}/{schedule.pk}/next-runs?count=0"), 400)
    assert_envelope(owner_client.get(f"{URL}/{schedule.pk}/next-runs?count=abc"), 400)


def test_run_now_creates_an_execution_and_shows_in_the_detail(owner_client, make_schedule):
    schedule = make_schedule()
    response = owner_client.post(f"{URL}/{schedule.pk}/run-now")
    assert response.status_code == 202, response.content
    execution = Execution.objects.get(pk=response.json()["execution_id"])
    assert execution.kind == "crew" and execution.crew_id == schedule.crew_id and execution.inputs == {"topic": "AI"}
    assert execution.dedupe_key is None
    second = owner_client.post(f"{URL}/{schedule.pk}/run-now").json()["execution_id"]
    assert second != str(execution.pk)  # run-now is never deduplicated
    detail = owner_client.get(f"{URL}/{schedule.pk}").json()
    assert detail["last_execution"]["id"] == second and detail["last_run_at"]


@pytest.mark.parametrize("role", ["owner", "admin", "developer", "user", "agent"])
def test_roles_humans_write_everyone_reads(make_member, client_for, role):
    member = make_member(role)
    crew = make_crew(member)
    owner = make_member("owner", organization=member.organization)
    from apps.scheduler.services import schedule_create

    existing = schedule_create(
        organization=member.organization,
        actor=owner.user,
        data={"name": "s", "cron_expression": "0 9 * * *", "crew": crew.pk, "inputs": {"topic": "AI"}},
    )
    client = client_for(member)
    assert client.get(URL).status_code == 200
    assert client.get(f"{URL}/{existing.pk}").status_code == 200
    assert client.get(f"{URL}/{existing.pk}/next-runs").status_code == 200
    writes = [
        client.post(
            URL,
            {"name": "x", "cron_expression": "0 9 * * *", "crew_id": str(crew.pk), "inputs": {"topic": "AI"}},
            format="json",
        ),
        client.put(f"{URL}/{existing.pk}", {"name": "y"}, format="json"),
        client.patch(f"{URL}/{existing.pk}/toggle"),
        client.post(f"{URL}/{existing.pk}/run-now"),
        client.delete(f"{URL}/{existing.pk}"),
    ]
    expected = [201, 200, 200, 202, 204] if role != "agent" else [403] * 5
    assert [r.status_code for r in writes] == expected


def test_another_organizations_schedule_is_404(owner_client, make_member):
    other = make_member("owner")
    from apps.scheduler.services import schedule_create

    foreign = schedule_create(
        organization=other.organization,
        actor=other.user,
        data={"name": "s", "cron_expression": "0 9 * * *", "crew": make_crew(other).pk, "inputs": {"topic": "AI"}},
    )
    for response in (
        owner_client.get(f"{URL}/{foreign.pk}"),
        owner_client.patch(f"{URL}/{foreign.pk}/toggle"),
        owner_client.post(f"{URL}/{foreign.pk}/run-now"),
        owner_client.get(f"{URL}/{foreign.pk}/next-runs"),
    ):
        assert_envelope(response, 404)
    assert periodic_of(foreign.pk).enabled is True
