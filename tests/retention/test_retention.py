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
        TraceSpan.objects.create(organization=org, execution=execution, trace_id="a" * 32, span_id="b" * 16,
                                 kind="llm", name="llm", started_at=at)
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
    return {"run": run.pk, "child": child.pk, "file": stored.pk, "key": stored.storage_key, "event": event.pk,
            "audit": audit.pk, "usage": usage.pk, "delivery": delivery.pk}


def _exists(ids: dict) -> dict:
    return {"run": Execution.objects.filter(pk=ids["run"]).exists(),
            "child": Execution.objects.filter(pk=ids["child"]).exists(),
            "logs": ExecutionLog.objects.filter(execution_id__in=[ids["run"], ids["child"]]).exists(),
            "spans": TraceSpan.objects.filter(execution_id__in=[ids["run"], ids["child"]]).exists(),
            "file": StoredFile.objects.filter(pk=ids["file"]).exists(),
            "stored_object": default_storage.exists(ids["key"]),
            "event": Event.objects.filter(pk=ids["event"]).exists(),
            "audit": AuditEvent.objects.filter(pk=ids["audit"]).exists(),
            "usage": UsageRollup.objects.filter(pk=ids["usage"]).exists(),
            "delivery": WebhookDelivery.objects.filter(pk=ids["delivery"]).exists()}


@pytest.mark.django_db
def test_policy_api_plan_defaults_owner_only_and_audit_floor(make_member, client_for, settings):
    settings.KAI_AUDIT_MIN_DAYS = 180
    owner = make_member(plan="pro")
    client = client_for(owner)
    body = client.get("/api/v1/retention").json()
    assert (body["executions_days"], body["events_days"], body["audit_days"], body["keep"]) == (90, 90, 365, "all")
    assert body["plan"] == "pro" and body["overridden"] == [] and body["audit_min_days"] == 180

    body = client.put("/api/v1/retention", {"executions_days": 14, "keep": "failed_only", "audit_days": 200},
                      format="json").json()
    assert (body["executions_days"], body["events_days"], body["audit_days"], body["keep"]) == (14, 90, 200, "failed_only")
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


@pytest.mark.django_db
def test_prune_removes_only_what_is_past_the_policy_in_small_statements(make_member, monkeypatch):
    owner = make_member(plan="standard")
    other = make_member(plan="standard")
    old = _seed(owner, days_ago=40)
    recent = _seed(owner, days_ago=5)
    elsewhere = _seed(other, days_ago=40)
    batch_sizes = []
    real_delete_pks = pruning.delete_pks

    def recording(model, pks, counts, **kwargs):
        batch_sizes.append(len(pks))
        return real_delete_pks(model, pks, counts, **kwargs)

    monkeypatch.setattr(pruning, "delete_pks", recording)
    monkeypatch.setattr(pruning, "BATCH", 1)
    with CaptureQueriesContext(connection) as queries:
        run = retention_prune(organization=owner.organization)
    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("DELETE")]
    assert max(batch_sizes) == 1 and len(deletes) == len(batch_sizes)  # one statement per batch of ≤ BATCH rows
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
    wait_for(lambda: RetentionRun.objects.filter(organization=owners[0].organization).exists(), 30,
             message="the prune of the free organization")
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
