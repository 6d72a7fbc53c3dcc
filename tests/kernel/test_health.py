"""Liveness and readiness (DESIGN §6)."""

import pytest

from kai_platform.api.errors import codes
from tests.helpers import assert_envelope

pytestmark = pytest.mark.django_db


def test_liveness_needs_no_credentials(api_client):
    response = api_client.get("/health")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readiness_is_503_naming_the_missing_worker(owner_client):
    response = owner_client.get("/api/v1/system/health")
    body = assert_envelope(response, 503, codes.SERVICE_UNAVAILABLE)
    assert body["status"] == "unhealthy"
    assert body["checks"]["workers"]["status"] == "down"
    assert {c: body["checks"][c]["status"] for c in ("database", "redis", "broker")} == dict.fromkeys(
        ("database", "redis", "broker"), "up"
    )
    assert [e["field"] for e in body["errors"]] == ["workers"]
    assert all("latency_ms" in check for check in body["checks"].values())


def test_readiness_is_healthy_with_a_real_worker(celery_worker_process, make_member, client_for):
    response = client_for(make_member()).get("/api/v1/system/health")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "healthy"
    assert body["checks"]["workers"]["status"] == "up"


def test_readiness_reports_a_dead_database(owner_client, monkeypatch):
    from kai_platform.api import views

    def dead():
        raise ConnectionError("database unreachable")

    monkeypatch.setitem(views.READINESS_CHECKS, "database", dead)
    body = assert_envelope(owner_client.get("/api/v1/system/health"), 503, codes.SERVICE_UNAVAILABLE)
    assert "database" in {e["field"] for e in body["errors"]}
    assert "database unreachable" in body["checks"]["database"]["detail"]
