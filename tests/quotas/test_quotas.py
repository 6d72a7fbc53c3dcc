"""Plan quotas: sliding windows in Redis, rebuilt from the database, enforced wherever a run is accepted."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.apps import apps as django_apps
from django.conf import settings
from django.utils import timezone
from django_redis import get_redis_connection

from apps.events.models import Event
from apps.quotas.errors import QuotaExceeded
from apps.quotas.models import QuotaOverride, QuotaPlan, QuotaRefusal, QuotaUsage
from apps.quotas.plans import DEFAULT_PLAN_LIMITS
from apps.quotas.selectors import quota_limits, quota_status
from apps.quotas.services import quota_consume
from apps.runs.models import Execution, ExecutionKind
from tests.crews.conftest import make_agent, make_crew
from tests.helpers import assert_envelope

pytestmark = pytest.mark.django_db


def limit_org(organization, **limits):
    return QuotaOverride.objects.update_or_create(organization=organization, defaults=limits)[0]


def run_task(client, agent):
    return client.post(f"/api/v1/agents/{agent.pk}/task", {"description": "Summarise the news"}, format="json")


def forget_redis():
    """What a Redis restart (or FLUSHDB) does to this test process: every key it keeps is gone.
    (Only this process's prefix is deleted, so parallel test workers sharing the db keep theirs.)"""
    redis = get_redis_connection("default")
    for key in redis.scan_iter(f"{settings.KAI_REDIS_PREFIX}:*"):
        redis.delete(key)
    assert not list(redis.scan_iter(f"{settings.KAI_REDIS_PREFIX}:quota*"))


@pytest.fixture
def start():
    return timezone.now().replace(microsecond=0)


def test_n_plus_one_is_refused_until_the_window_slides(member, client_for, start):
    limit_org(member.organization, agent_executions_per_hour=3)
    agent = make_agent(member)
    client = client_for(member, via="api_key")  # a JWT would expire while we travel
    with time_machine.travel(start, tick=False) as traveller:
        assert run_task(client, agent).status_code == 202
        traveller.move_to(start + timedelta(minutes=20))
        assert run_task(client, agent).status_code == 202
        assert run_task(client, agent).status_code == 202

        refused = run_task(client, agent)
        body = assert_envelope(refused, 429, "GENERAL_002")
        assert body["type"] == "quota_exceeded"
        assert body["quota"] == {
            "name": "agent_executions",
            "limit": 3,
            "used": 3,
            "window": "hour",
            "window_seconds": 3600,
            "reset_at": (start + timedelta(hours=1)).isoformat(),
            "retry_after": 2400,
            "plan": "standard",
            "custom": True,
        }
        assert "agent_executions" in body["detail"] and "per hour" in body["detail"]
        assert refused["Retry-After"] == "2400"
        assert Execution.objects.for_org(member.organization).count() == 3  # nothing half-written

        # the first run leaves the window an hour after it was accepted: one slot, not three
        traveller.move_to(start + timedelta(hours=1))
        assert run_task(client, agent).status_code == 202
        again = assert_envelope(run_task(client, agent), 429, "GENERAL_002")
        assert again["quota"]["reset_at"] == (start + timedelta(minutes=80)).isoformat()

        traveller.move_to(start + timedelta(minutes=80, seconds=1))
        assert run_task(client, agent).status_code == 202
        assert run_task(client, agent).status_code == 202
        assert run_task(client, agent).status_code == 429
    assert Execution.objects.for_org(member.organization).count() == 6


def test_every_entry_point_is_counted_through_execution_create(member, owner_client):
    """REST (executions, agents/{id}/task), the run engine's own callers: one window."""
    from apps.runs.services import execution_create

    limit_org(member.organization, agent_executions_per_hour=2)
    crew = make_crew(member)
    assert owner_client.post(
        "/api/v1/executions", {"crew_id": str(crew.pk), "inputs": {"topic": "AI"}}, format="json"
    ).status_code in (200, 201, 202)
    execution_create(
        organization=member.organization,
        actor=None,
        kind=ExecutionKind.AGENT_COMMAND,
        agent=make_agent(member),
        definition={"command": "status"},
    )
    with pytest.raises(QuotaExceeded):
        execution_create(
            organization=member.organization,
            actor=None,
            kind=ExecutionKind.AGENT_TASK,
            agent=make_agent(member, name="Other"),
            definition={"description": "x"},
        )
    assert_envelope(
        owner_client.post("/api/v1/executions", {"crew_id": str(crew.pk), "inputs": {"topic": "AI"}}, format="json"),
        429,
        "GENERAL_002",
    )
    from apps.agents.consumers import _start_command  # the agent socket's `command` message

    with pytest.raises(QuotaExceeded):
        _start_command(member.organization, member.user, make_agent(member, name="Socket"), "status", {})
    assert Execution.objects.for_org(member.organization).count() == 2


def test_workflow_runs_have_their_own_daily_quota_and_steps_are_not_runs(member):
    from apps.runs.services import execution_create

    limit_org(member.organization, workflow_executions_per_day=1, agent_executions_per_hour=5)
    run = execution_create(
        organization=member.organization,
        actor=None,
        kind=ExecutionKind.WORKFLOW,
        definition={"name": "wf"},
        enqueue=False,
    )
    for _ in range(3):  # steps are part of their run's unit
        execution_create(
            organization=member.organization,
            actor=None,
            kind=ExecutionKind.WORKFLOW_STEP,
            parent=run,
            definition={"action": "x"},
            enqueue=False,
        )
    with pytest.raises(QuotaExceeded) as refused:
        execution_create(
            organization=member.organization,
            actor=None,
            kind=ExecutionKind.WORKFLOW,
            definition={"name": "wf"},
            enqueue=False,
        )
    assert refused.value.quota["name"] == "workflow_executions" and refused.value.quota["window"] == "day"
    status = quota_status(organization=member.organization)
    assert status["workflow_executions"]["used"] == 1
    assert status["agent_executions"]["used"] == 0
    # a caller that also consumes with the run's id counts nothing more
    result = quota_consume(organization=member.organization, quota="workflow_executions", ref=run.pk)
    assert result.counted is False and result.used == 1


def test_ledger_quota_counts_once_per_ref_and_refuses_over_the_limit(member):
    limit_org(member.organization, voice_commands_per_hour=2)
    quota_consume(organization=member.organization, quota="voice_commands", source="rest", ref="cmd-1")
    assert quota_consume(organization=member.organization, quota="voice_commands", ref="cmd-1").counted is False
    quota_consume(organization=member.organization, quota="voice_commands", source="socket")
    with pytest.raises(QuotaExceeded) as refused:
        quota_consume(organization=member.organization, quota="voice_commands", source="mcp")
    assert refused.value.quota["name"] == "voice_commands"
    assert QuotaUsage.objects.for_org(member.organization).count() == 2  # the refused one left no row


def test_redis_losing_its_keys_rebuilds_the_counts_from_the_database(member, client_for, start):
    limit_org(member.organization, agent_executions_per_hour=3, voice_commands_per_hour=5)
    agent = make_agent(member)
    client = client_for(member, via="api_key")
    with time_machine.travel(start, tick=False) as traveller:
        for _ in range(2):
            assert run_task(client, agent).status_code == 202
        traveller.move_to(start + timedelta(minutes=10))
        assert run_task(client, agent).status_code == 202
        quota_consume(organization=member.organization, quota="voice_commands", amount=2, source="rest")

        forget_redis()
        refused = assert_envelope(run_task(client, agent), 429, "GENERAL_002")  # not reset to zero
        assert refused["quota"]["used"] == 3
        assert refused["quota"]["reset_at"] == (start + timedelta(hours=1)).isoformat()

        forget_redis()
        quotas = client.get("/api/v1/usage").json()["quotas"]
        assert quotas["agent_executions"]["used"] == 3
        assert quotas["voice_commands"]["used"] == 2 and quotas["voice_commands"]["remaining"] == 3

        forget_redis()
        traveller.move_to(start + timedelta(hours=1, seconds=1))  # the two oldest left the window
        assert run_task(client, agent).status_code == 202
        assert run_task(client, agent).status_code == 202
        assert run_task(client, agent).status_code == 429


def test_without_redis_the_database_decides(member, monkeypatch):
    import redis

    from apps.quotas import counter
    from apps.runs.services import execution_create

    limit_org(member.organization, agent_executions_per_hour=1)

    def down(*args, **kwargs):
        raise redis.ConnectionError("Redis is down")

    monkeypatch.setattr(counter, "consume", down)
    agent = make_agent(member)
    execution_create(
        organization=member.organization, actor=None, kind=ExecutionKind.AGENT_TASK, agent=agent, enqueue=False
    )
    with pytest.raises(QuotaExceeded):
        execution_create(
            organization=member.organization, actor=None, kind=ExecutionKind.AGENT_TASK, agent=agent, enqueue=False
        )


def test_usage_shows_each_quota_and_the_overview_route(member, owner_client, start):
    limit_org(member.organization, agent_executions_per_hour=4)
    agent = make_agent(member)
    with time_machine.travel(start, tick=False):
        assert run_task(owner_client, agent).status_code == 202
        body = owner_client.get("/api/v1/usage").json()
        overview = owner_client.get("/api/v1/quotas").json()
    quotas = body["quotas"]
    assert set(quotas) == {"agent_executions", "workflow_executions", "voice_commands"}
    agent_quota = quotas["agent_executions"]
    assert (agent_quota["limit"], agent_quota["used"], agent_quota["remaining"]) == (4, 1, 3)
    assert agent_quota["custom"] is True and agent_quota["window"] == "hour"
    assert datetime.fromisoformat(agent_quota["reset_at"].replace("Z", "+00:00")) == start + timedelta(hours=1)
    standard = DEFAULT_PLAN_LIMITS["standard"]
    assert quotas["workflow_executions"] == {
        **quotas["workflow_executions"],
        "limit": standard["workflow_executions"],
        "used": 0,
        "reset_at": None,
        "custom": False,
        "window": "day",
    }
    assert overview["plan"] == "standard" and overview["quotas"]["agent_executions"]["used"] == 1
    # an agent's usage is about that agent: no organization quotas there
    assert "quotas" not in owner_client.get(f"/api/v1/usage/agents/{agent.pk}").json()


def test_quota_warning_once_per_window_at_80_percent(member):
    from apps.runs.services import execution_create

    limit_org(member.organization, agent_executions_per_hour=5)
    agent = make_agent(member)

    def warnings():
        return list(Event.objects.filter(organization=member.organization, type="quota.warning"))

    for _ in range(3):
        execution_create(
            organization=member.organization, actor=None, kind=ExecutionKind.AGENT_TASK, agent=agent, enqueue=False
        )
    assert warnings() == []
    execution_create(
        organization=member.organization, actor=None, kind=ExecutionKind.AGENT_TASK, agent=agent, enqueue=False
    )
    [warning] = warnings()
    assert warning.severity == "warning"
    assert warning.data["quota"] == "agent_executions"
    assert (warning.data["used"], warning.data["limit"], warning.data["percent"]) == (4, 5, 80)
    execution_create(
        organization=member.organization, actor=None, kind=ExecutionKind.AGENT_TASK, agent=agent, enqueue=False
    )
    assert len(warnings()) == 1

    from apps.events.catalog import delivery_names

    assert delivery_names("quota.warning", {"quota_warning"}) == ["quota_warning"]


def test_limits_come_from_the_plan_row_then_the_override(member):
    # the plan rows as the migration seeds them: a transactional test's flush on this xdist worker drops them
    importlib.import_module("apps.quotas.migrations.0002_seed_plans").seed(django_apps, None)
    org = member.organization
    assert quota_limits(organization=org)["limits"] == DEFAULT_PLAN_LIMITS["standard"]
    org.plan = "free"
    org.save()
    assert quota_limits(organization=org)["limits"]["agent_executions"] == 200
    QuotaPlan.objects.filter(plan="free").update(agent_executions_per_hour=150)
    QuotaPlan.objects.get(plan="free").save()  # a staff edit (the admin saves the row)
    assert quota_limits(organization=org)["limits"]["agent_executions"] == 150
    override = limit_org(org, voice_commands_per_hour=9)
    resolved = quota_limits(organization=org)
    assert resolved["limits"]["voice_commands"] == 9 and resolved["custom"] == ["voice_commands"]
    assert resolved["limits"]["agent_executions"] == 150
    override.delete()
    assert quota_limits(organization=org)["custom"] == []


def test_refused_scheduled_tick_is_recorded_in_the_schedules_history(member, owner_client):
    from apps.runs.services import execution_create
    from apps.scheduler.services import schedule_create, schedule_fire

    crew = make_crew(member)
    schedule = schedule_create(
        organization=member.organization,
        actor=member.user,
        data={"name": "Nightly", "cron_expression": "0 9 * * *", "crew": crew.pk, "inputs": {"topic": "AI"}},
    )
    limit_org(member.organization, agent_executions_per_hour=1)
    execution_create(organization=member.organization, actor=None, kind=ExecutionKind.CREW, crew=crew, enqueue=False)

    tick = timezone.now().astimezone(UTC).replace(hour=9, minute=0, second=0, microsecond=0)
    result = schedule_fire(schedule_id=schedule.pk, now=tick + timedelta(seconds=30))
    assert result.outcome == "quota_refused" and result.execution_id is None
    assert not Execution.objects.filter(dedupe_key__startswith=f"schedule:{schedule.pk}:").exists()

    [refusal] = QuotaRefusal.objects.for_org(member.organization)
    assert (refusal.source, refusal.source_id, refusal.quota) == ("schedule", str(schedule.pk), "agent_executions")
    assert refusal.detail["tick"] == result.tick
    listed = owner_client.get("/api/v1/quotas/refusals", {"source": "schedule", "source_id": str(schedule.pk)})
    assert listed.status_code == 200 and listed.json()["total"] == 1
    item = listed.json()["items"][0]
    assert item["quota"] == "agent_executions" and item["limit"] == 1 and item["reset_at"]
    failed = Event.objects.get(organization=member.organization, type="schedule.failed")
    assert failed.data["reason"] == "quota_exceeded" and failed.data["quota"]["name"] == "agent_executions"
    assert failed.data["tick"] == result.tick

    # the tick is spent: beat firing it again neither runs it nor records a second refusal
    assert schedule_fire(schedule_id=schedule.pk, now=tick + timedelta(seconds=40)).outcome == "duplicate"
    assert QuotaRefusal.objects.for_org(member.organization).count() == 1

    # with room again, the next tick runs; the schedule's history shows both ticks
    limit_org(member.organization, agent_executions_per_hour=5)
    fired = schedule_fire(schedule_id=schedule.pk, now=tick + timedelta(days=1, seconds=30))
    assert fired.outcome == "fired"
    history = owner_client.get(f"/api/v1/scheduler/schedules/{schedule.pk}/history")
    assert history.status_code == 200, history.content
    items = history.json()["items"]
    assert [(item["outcome"], item["tick"]) for item in items] == [
        ("fired", fired.tick),
        ("quota_refused", result.tick),
    ]
    assert items[0]["execution_id"] == fired.execution_id and items[0]["status"] == "PENDING"
    assert items[1]["quota"]["name"] == "agent_executions" and items[1]["quota"]["limit"] == 1
    assert "agent_executions" in items[1]["message"]


def test_staff_give_an_organization_custom_limits_in_the_admin(client, member):
    from django.urls import reverse

    from apps.audit.models import AuditEvent
    from tests.factories import UserFactory

    staff = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(staff)
    org = member.organization
    assert quota_limits(organization=org)["limits"]["agent_executions"] == 500  # cached now
    response = client.post(
        reverse("admin:quotas_quotaoverride_add"),
        {
            "organization": str(org.pk),
            "agent_executions_per_hour": "7",
            "workflow_executions_per_day": "",
            "voice_commands_per_hour": "",
            "note": "contract 42",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    override = QuotaOverride.objects.get(organization=org)
    assert override.updated_by == staff and override.workflow_executions_per_day is None
    resolved = quota_limits(organization=org)
    assert resolved["limits"]["agent_executions"] == 7 and resolved["custom"] == ["agent_executions"]
    assert resolved["limits"]["workflow_executions"] == DEFAULT_PLAN_LIMITS["standard"]["workflow_executions"]
    assert AuditEvent.objects.filter(organization=org, action="quota_override.create").exists()
    page = client.get(reverse("admin:quotas_quotaoverride_change", args=[override.pk]))
    assert b"agent_executions: 0 of 7 per hour" in page.content
