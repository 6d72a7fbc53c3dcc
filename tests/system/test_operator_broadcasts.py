"""Operator broadcasts (system alerts, maintenance) and a run's progress events: permissions,
validation, the admin and the runner, in-process (the wire is in tests/conformance/test_seed004_events.py)."""

from __future__ import annotations

import uuid

import pytest

from apps.accounts.models import User
from apps.events import catalog
from apps.events.models import Event
from apps.runs import lifecycle
from apps.runs.models import ExecutionKind
from apps.system.models import Maintenance, SystemAlert
from tests.crews.conftest import AGENTS_YAML, TASKS_YAML, make_agent
from tests.helpers import assert_envelope

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff():
    return User.objects.create(email=f"ops{uuid.uuid4().hex[:8]}@example.com", is_staff=True, is_superuser=True)


@pytest.fixture
def staff_api(staff, client_for):
    from rest_framework.test import APIClient

    from tests.conftest import jwt_for

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {jwt_for(staff)['access_token']}")
    return client


def test_only_operators_write_and_bodies_are_checked(owner_client, staff_api, member):
    assert_envelope(owner_client.post("/api/v1/system/alerts", {"message": "x"}, format="json"), 403)
    assert_envelope(owner_client.post("/api/v1/system/maintenance", {"enabled": True}, format="json"), 403)
    assert owner_client.get("/api/v1/system/maintenance").json()["enabled"] is False  # anyone reads it
    assert_envelope(staff_api.post("/api/v1/system/alerts", {"severity": "loud", "message": ""}, format="json"), 400)
    assert_envelope(
        staff_api.post("/api/v1/system/maintenance", {"enabled": True, "until": "2001-01-01T00:00:00Z"}, format="json"),
        400,
    )
    assert not SystemAlert.objects.exists() and not Maintenance.objects.exists()
    created = staff_api.post("/api/v1/system/alerts", {"message": "Heads up"}, format="json")
    assert created.status_code == 201 and created.json()["organizations_reached"] >= 1
    assert staff_api.get("/api/v1/system/alerts").json()["items"][0]["message"] == "Heads up"
    event = Event.objects.for_org(member.organization).get(type="system.alert")
    assert event.data["severity"] == "warning" and event.data["status"] == "investigating"
    from apps.audit.models import AuditEvent

    assert AuditEvent.objects.filter(action="system.alert", organization=None).count() == 1


def test_admin_add_broadcasts_and_actions_announce(client, staff, member):
    client.force_login(staff)
    response = client.post(
        "/admin/system/systemalert/add/",
        {
            "severity": "critical",
            "type": "outage",
            "message": "Provider down",
            "affected_components": '["llm"]',
            "status": "identified",
            "estimated_resolution_0": "",
            "estimated_resolution_1": "",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    alert = SystemAlert.objects.get()
    assert alert.organizations_reached >= 1 and alert.created_by == staff
    client.post("/admin/system/systemalert/", {"action": "announce_resolved", "_selected_action": [alert.pk]})
    statuses = [
        e.data["status"] for e in Event.objects.for_org(member.organization).filter(type="system.alert").order_by("id")
    ]
    assert statuses == ["identified", "resolved"]


def test_maintenance_refuses_new_runs_only(staff, member):
    from apps.runs import services as runs
    from apps.system import services

    agent = make_agent(member)
    parent = runs.execution_create(
        organization=member.organization, actor=member.user, kind=ExecutionKind.AGENT_TASK, agent=agent, enqueue=False
    )
    services.maintenance_set(actor=staff, enabled=True, message="upgrade")
    with pytest.raises(Exception) as refused:
        runs.execution_create(
            organization=member.organization,
            actor=member.user,
            kind=ExecutionKind.AGENT_TASK,
            agent=agent,
            enqueue=False,
        )
    assert refused.value.status_code == 503 and refused.value.retry_after == 60
    child = runs.execution_create(
        organization=member.organization,
        actor=member.user,
        parent=parent,
        kind=ExecutionKind.AGENT_TASK,
        agent=agent,
        enqueue=False,
    )
    assert child.parent_id == parent.pk  # a running run's steps go on
    event = Event.objects.for_org(member.organization).filter(type="system.maintenance").get()
    assert catalog.delivery_names(event.type, {"maintenance_mode"}) == ["maintenance_mode"]
    assert event.data["enabled"] is True and event.data["message"] == "upgrade"


@pytest.mark.django_db(transaction=True)
def test_a_crew_run_publishes_progress_step_by_step(member):
    from apps.runs import services as runs

    execution = runs.execution_create(
        organization=member.organization,
        actor=member.user,
        kind=ExecutionKind.CREW,
        enqueue=False,
        definition={"agents_yaml": AGENTS_YAML, "tasks_yaml": TASKS_YAML, "process": "sequential"},
        inputs={"topic": "AI"},
    )
    assert lifecycle.run(execution.pk, worker="test") == "completed"
    progress = list(Event.objects.for_org(member.organization).filter(type="execution.progress").order_by("id"))
    steps = [(e.data["step"], e.data["total_steps"], e.data["progress"]) for e in progress]
    total = progress[0].data["total_steps"]
    assert total >= 2 and steps == [(i, total, round(i / total, 4)) for i in range(1, total + 1)]
    assert progress[-1].data["tokens"] > progress[0].data["tokens"] > 0
    assert all(e.owner_id == member.user.pk for e in progress)  # a user-role creator sees their run's progress
    shaped = catalog.shape(
        "inference_progress",
        {**progress[0].__dict__, "data": progress[0].data, "execution_id": str(execution.pk), "agent_id": None},
    )
    assert shaped["inference_id"] == str(execution.pk) and "estimated_remaining" in shaped and "stage" in shaped
