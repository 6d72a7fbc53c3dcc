"""Retention: the per-organization policy API (owners, plan defaults, the audit floor) and the
prune — run by a real worker — that removes exactly what is past the policy, in batches of at
most BATCH rows a statement, and records and audits what it removed."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.events.models import Event
from apps.files.models import StoredFile
from apps.retention import pruning
from apps.retention.models import RetentionRun
from apps.retention.services import retention_prune
from apps.runs.models import Execution, ExecutionEvent, ExecutionLog, TraceSpan, UsageRollup
from apps.webhooks.models import WebhookDelivery
from tests.crews.conftest import wait_for
from tests.factories import make_tenant_object
from tests.helpers import assert_envelope


def _seed(member, *, days_ago: float, status: str = "COMPLETED") -> dict:
    """One finished run (with a child run, logs, spans, transitions, a file) and one of each other
    kind of row, all ``days_ago`` old."""
    org, user = member.organization, member.user
    at = timezone.now() - timedelta(days=days_ago)
    run = make_tenant_object(Execution, org, user)
    child = make_tenant_object(Execution, org, user)
    Execution.objects.filter(pk__in=[run.pk, child.pk]).update(status=status, completed_at=at, created_at=at)
    Execution.objects.filter(pk=child.pk).update(parent=run)
    for execution in (run, child):
        ExecutionLog.objects.create(organization=org, execution=execution, seq=1, message="line", created_at=at)
        TraceSpan.objects.create(
            organization=org,
            execution=execution,
            trace_id="a" * 32,
            span_id="b" * 16,
            kind="llm",
            name="llm",
            started_at=at,
        )
        ExecutionEvent.objects.create(organization=org, execution=execution, to_status=status, at=at)
    stored = make_tenant_object(StoredFile, org, user)
    StoredFile.objects.filter(pk=stored.pk).update(execution_id=run.pk, created_at=at)
    event = Event.objects.create(organization=org, type="agent.created", data={})
    audit = AuditEvent.objects.create(organization=org, action="agent.create", model="agents.agent", object_id="1")
    usage = make_tenant_object(UsageRollup, org, user)
    delivery = make_tenant_object(WebhookDelivery, org, user)
    Event.objects.filter(pk=event.pk).update(created_at=at)
    AuditEvent.objects.filter(pk=audit.pk).update(created_at=at)
    UsageRollup.objects.filter(pk=usage.pk).update(day=at.date())
    WebhookDelivery.objects.filter(pk=delivery.pk).update(created_at=at)
    return {
        "run": run.pk,
        "child": child.pk,
        "file": stored.pk,
        "key": stored.storage_key,
        "event": event.pk,
        "audit": audit.pk,
        "usage": usage.pk,
        "delivery": delivery.pk,
    }


def _exists(ids: dict) -> dict:
    return {
        "run": Execution.objects.filter(pk=ids["run"]).exists(),
        "child": Execution.objects.filter(pk=ids["child"]).exists(),
        "logs": ExecutionLog.objects.filter(execution_id__in=[ids["run"], ids["child"]]).exists(),
        "spans": TraceSpan.objects.filter(execution_id__in=[ids["run"], ids["child"]]).exists(),
        "file": StoredFile.objects.filter(pk=ids["file"]).exists(),
        "stored_object": default_storage.exists(ids["key"]),
        "event": Event.objects.filter(pk=ids["event"]).exists(),
        "audit": AuditEvent.objects.filter(pk=ids["audit"]).exists(),
        "usage": UsageRollup.objects.filter(pk=ids["usage"]).exists(),
        "delivery": WebhookDelivery.objects.filter(pk=ids["delivery"]).exists(),
    }


@pytest.mark.django_db
def test_policy_api_plan_defaults_owner_only_and_audit_floor(make_member, client_for, settings):
    settings.KAI_AUDIT_MIN_DAYS = 180
    owner = make_member(plan="pro")
    client = client_for(owner)
    body = client.get("/api/v1/retention").json()
    assert (body["executions_days"], body["events_days"], body["audit_days"], body["keep"]) == (90, 90, 365, "all")
    assert body["plan"] == "pro" and body["overridden"] == [] and body["audit_min_days"] == 180

    body = client.put(
        "/api/v1/retention", {"executions_days": 14, "keep": "failed_only", "audit_days": 200}, format="json"
    ).json()
    assert (body["executions_days"], body["events_days"], body["audit_days"], body["keep"]) == (
        14,
        90,
        200,
        "failed_only",
    )
    assert body["overridden"] == ["audit_days", "executions_days"]
    row = AuditEvent.objects.get(organization=owner.organization, action="retention.update")
    assert row.after["executions_days"] == 14

    assert_envelope(client.put("/api/v1/retention", {"audit_days": 30}, format="json"), 400)
    assert_envelope(client.put("/api/v1/retention", {"events_days": 0}, format="json"), 400)
    assert client.put("/api/v1/retention", {"executions_days": None}, format="json").json()["executions_days"] == 90
    admin = make_member("admin", organization=owner.organization)
    assert_envelope(client_for(admin).get("/api/v1/retention"), 403)
    assert_envelope(client_for(admin).put("/api/v1/retention", {"events_days": 5}, format="json"), 403)
    free = make_member(plan="free")
    assert client_for(free).get("/api/v1/retention").json()["executions_days"] == 30


def _record_statements(monkeypatch) -> list[int]:
    """The rows each of the pruner's DELETE statements removed, in order."""
    rows: list[int] = []
    real_execute = pruning.Pruner._execute

    def recording(self, sql, params):
        rows.append(real_execute(self, sql, params))
        return rows[-1]

    monkeypatch.setattr(pruning.Pruner, "_execute", recording)
    return rows


@pytest.mark.django_db
def test_prune_removes_only_what_is_past_the_policy_in_small_statements(make_member, monkeypatch):
    owner = make_member(plan="standard")
    other = make_member(plan="standard")
    old = _seed(owner, days_ago=40)
    recent = _seed(owner, days_ago=5)
    elsewhere = _seed(other, days_ago=40)
    statements = _record_statements(monkeypatch)
    monkeypatch.setattr(pruning, "BATCH", 1)
    with CaptureQueriesContext(connection) as queries:
        run = retention_prune(organization=owner.organization)
    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("DELETE")]
    assert max(statements) == 1 and len(deletes) == len(statements)  # every DELETE: ≤ BATCH rows
    assert sum(statements) == sum(run.counts.values())
    assert _exists(old) == {k: k in ("audit", "usage") for k in _exists(old)}  # those two: 365 days
    assert all(_exists(recent).values()) and all(_exists(elsewhere).values())
    assert run.counts["runs.execution"] == 2 and run.counts["runs.executionlog"] == 2
    assert run.counts["events.event"] == 1 and run.counts["files.storedfile"] == 1
    assert run.counts["webhooks.webhookdelivery"] == 1 and "runs.usagerollup" not in run.counts
    audit = AuditEvent.objects.get(organization=owner.organization, action="retention.prune")
    assert audit.after["counts"] == run.counts
    assert retention_prune(organization=owner.organization) is None  # nothing more to do


@pytest.mark.django_db
def test_keep_failed_only_drops_completed_runs_after_a_day_and_keeps_failed_ones(make_member, client_for):
    owner = make_member(plan="enterprise")
    client_for(owner).put("/api/v1/retention", {"keep": "failed_only"}, format="json")
    completed = _seed(owner, days_ago=2)
    failed = _seed(owner, days_ago=2, status="FAILED")
    fresh = _seed(owner, days_ago=0.5)
    retention_prune(organization=owner.organization)
    assert not _exists(completed)["run"] and _exists(failed)["run"] and _exists(fresh)["run"]


@pytest.mark.slow
def test_beat_task_prunes_every_organization_on_a_real_worker(make_member, celery_worker_process):
    from apps.retention.tasks import prune_all

    owners = [make_member(plan="free"), make_member(plan="pro")]
    old = [_seed(owner, days_ago=45) for owner in owners]  # past free's 30 days, not pro's 90
    prune_all.delay()
    wait_for(
        lambda: RetentionRun.objects.filter(organization=owners[0].organization).exists(),
        30,
        message="the prune of the free organization",
    )
    assert not _exists(old[0])["run"] and _exists(old[1])["run"]
    counts = Counter(RetentionRun.objects.get(organization=owners[0].organization).counts)
    assert counts["runs.execution"] == 2 and counts["runs.tracespan"] == 2


@pytest.mark.django_db
def test_a_second_prune_of_the_same_organization_waits_for_the_first(make_member):
    from django.core.cache import cache

    owner = make_member(plan="standard")
    old = _seed(owner, days_ago=40)
    cache.add(f"retention:prune:{owner.organization.pk}", 1, 60)  # a prune already under way
    try:
        assert retention_prune(organization=owner.organization) is None
        assert _exists(old)["run"]
    finally:
        cache.delete(f"retention:prune:{owner.organization.pk}")
    assert retention_prune(organization=owner.organization).counts["runs.execution"] == 2


@pytest.mark.django_db
def test_dependents_go_by_their_foreign_key_in_statements_of_at_most_batch_rows(make_member, monkeypatch):
    owner = make_member(plan="standard")
    old, recent = _seed(owner, days_ago=40), _seed(owner, days_ago=5)
    at = timezone.now() - timedelta(days=40)
    org = owner.organization
    ExecutionLog.objects.bulk_create(
        [
            ExecutionLog(organization=org, execution_id=pk, seq=seq, message="x", created_at=at)
            for pk in (old["run"], old["child"])
            for seq in range(2, 40)
        ]
    )
    ExecutionLog.objects.bulk_create(
        [
            ExecutionLog(organization=org, execution_id=recent["run"], seq=seq, message="x", created_at=timezone.now())
            for seq in range(2, 40)
        ]
    )
    statements = _record_statements(monkeypatch)
    monkeypatch.setattr(pruning, "BATCH", 10)
    with CaptureQueriesContext(connection) as queries:
        run = retention_prune(organization=org)
    log_deletes = [
        q["sql"] for q in queries.captured_queries if q["sql"].startswith('DELETE FROM "crews_executionlog"')
    ]
    assert all("ctid = ANY(ARRAY(SELECT ctid" in sql and "LIMIT" in sql for sql in log_deletes)
    assert max(statements) == 10 and run.counts["runs.executionlog"] == 2 * 39
    assert not ExecutionLog.objects.filter(execution_id__in=[old["run"], old["child"]]).exists()
    assert ExecutionLog.objects.filter(execution_id=recent["run"]).count() == 39


def test_the_duty_cycle_rests_in_proportion_to_the_work(monkeypatch):
    clock, slept = [100.0], []
    monkeypatch.setattr(pruning.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(pruning.time, "sleep", slept.append)
    pruner = pruning.Pruner(duty=0.25, pause=0.01)
    clock[0] += 0.2  # 0.2 s of work since the last rest
    pruner.rest()
    assert slept[0] == pytest.approx(0.6)  # three times the work at a 25% duty
    clock[0] += 0.001  # next to no work: the least pause
    pruner.rest()
    assert slept[1] == pytest.approx(0.01)
    assert pruner.stats()["rested_seconds"] == pytest.approx(0.61)
    assert pruning.Pruner(duty=1.0).duty == 1.0 and pruning.Pruner(duty=0).duty > 0


@pytest.mark.django_db
def test_a_prune_runs_its_thread_and_local_backend_at_a_lower_priority_and_gives_it_back():
    import os

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    if not pruning._is_local_postgres(backend) or not pruning._may_raise_priority():
        pytest.skip("the database server is not a process this test may renice")
    before = os.getpriority(os.PRIO_PROCESS, backend), os.getpriority(os.PRIO_PROCESS, 0)
    with pruning.lowered_priority(max(before) + 5) as lowered:
        assert lowered.backend == backend
        assert os.getpriority(os.PRIO_PROCESS, backend) == max(before) + 5
        assert os.getpriority(os.PRIO_PROCESS, 0) == max(before) + 5
    assert (os.getpriority(os.PRIO_PROCESS, backend), os.getpriority(os.PRIO_PROCESS, 0)) == before
