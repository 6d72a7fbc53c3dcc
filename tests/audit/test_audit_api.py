"""The audit trail API (seed 003 filters, NDJSON export) and what writes leave in it."""

import json

import pytest

from apps.audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_api_key_lifecycle_is_audited_with_diffs_and_no_secret(member, client_for):
    client = client_for(member)
    created = client.post("/api/v1/auth/tokens", {"name": "audited"}, format="json").json()
    client.delete(f"/api/v1/auth/tokens/{created['id']}")
    rows = client.get("/api/v1/audit", {"model_name": "ApiKey"}).json()["items"]
    assert [r["action"] for r in rows] == ["api_key.revoke", "api_key.create"]
    revoke, create = rows
    assert create["before"] is None and create["after"]["name"] == "audited"
    assert create["after"]["key_hash"] == "[redacted]"
    assert set(revoke["after"]) == {"revoked_at", "updated_at"} and revoke["before"]["revoked_at"] is None
    assert create["actor"]["id"] == str(member.user.pk) and create["actor_type"] == "user"
    assert create["request_id"] and create["operation_type"] == "create"
    dump = json.dumps(rows)
    assert created["key"] not in dump and created["key"].split("_")[-1] not in dump


def test_filters(member, client_for):
    client = client_for(member)
    client.post("/api/v1/auth/tokens", {"name": "a"}, format="json")
    client.post("/api/v1/config/system", {"settings": {"x": 1}}, format="json")
    assert {r["action"] for r in client.get("/api/v1/audit", {"operation_type": "create"}).json()["items"]} >= {
        "api_key.create"
    }
    config = client.get("/api/v1/audit", {"model_name": "accounts.Organization", "operation_type": "update"}).json()
    assert [r["action"] for r in config["items"]] == ["config.system.update"]
    assert config["items"][0]["after"] == {"settings": {"x": 1}}
    assert client.get("/api/v1/audit", {"user_id": str(member.user.pk)}).json()["total"] >= 2
    assert client.get("/api/v1/audit", {"since": "2999-01-01T00:00:00Z"}).json()["total"] == 0


def test_ndjson_export(member, client_for):
    client = client_for(member)
    client.post("/api/v1/auth/tokens", {"name": "a"}, format="json")
    response = client.get("/api/v1/audit?format=ndjson")
    assert response["Content-Type"].startswith("application/x-ndjson")
    lines = b"".join(response.streaming_content).decode().strip().splitlines()
    assert any(json.loads(line)["action"] == "api_key.create" for line in lines)


def test_only_owners_and_admins_read_the_trail(make_member, client_for):
    owner = make_member()
    developer = make_member("developer", organization=owner.organization)
    assert client_for(developer).get("/api/v1/audit").status_code == 403
    assert client_for(owner).get("/api/v1/audit").status_code == 200


def test_audit_rows_carry_request_ip_and_user_agent(member, client_for):
    client = client_for(member)
    client.post(
        "/api/v1/auth/tokens",
        {"name": "a"},
        format="json",
        HTTP_X_REQUEST_ID="req-audit-1",
        HTTP_USER_AGENT="kai-tests/1.0",
    )
    row = AuditEvent.objects.get(action="api_key.create", organization=member.organization)
    assert row.request_id == "req-audit-1" and row.user_agent == "kai-tests/1.0" and row.ip == "127.0.0.1"


def test_api_key_actor_type(member, client_for):
    client = client_for(member, via="api_key")
    client.post("/api/v1/config/system", {"settings": {"y": 2}}, format="json")
    row = AuditEvent.objects.get(action="config.system.update", organization=member.organization)
    assert row.actor_type == "api_key" and row.actor_id == member.user.pk


def test_audit_record_many_writes_the_rows_audit_record_would_in_one_insert(member):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from apps.audit.services import audit_covered, audit_record, audit_record_many

    entries = [
        {
            "organization": member.organization,
            "actor": member.user,
            "action": "bulk.test",
            "model": "x.Thing",
            "object_id": str(i),
            "after": {"i": i, "api_key": "secret"},
        }
        for i in range(3)
    ]
    alone = audit_record(**{**entries[0], "object_id": "alone"})
    with CaptureQueriesContext(connection) as ctx:
        rows = audit_record_many(entries)
    assert len(ctx.captured_queries) == 1
    assert [
        r.object_id for r in AuditEvent.objects.filter(action="bulk.test").exclude(object_id="alone").order_by("id")
    ] == ["0", "1", "2"]
    fields = ("organization_id", "actor_id", "actor_type", "action", "model", "before", "request_id", "ip")
    for row in rows:
        assert all(getattr(row, f) == getattr(alone, f) for f in fields)
        assert row.after["api_key"] == "[redacted]"
    with audit_covered():
        assert audit_record_many(entries) == []
    assert AuditEvent.objects.filter(action="bulk.test").count() == 4
