"""/metrics: Prometheus text that the prometheus-client parser accepts, behind a token."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.django_db


def families(response):
    return {f.name: f for f in text_string_to_metric_families(response.content.decode())}


def test_metrics_parse_and_cover_requests_and_platform_gauges(api_client, owner_client, settings):
    settings.KAI_METRICS_TOKEN = "scrape-secret"
    owner_client.get("/api/v1/auth/me")
    assert api_client.get("/metrics").status_code == 401
    api_client.credentials(HTTP_AUTHORIZATION="Bearer wrong")
    assert api_client.get("/metrics").status_code == 401
    api_client.credentials(HTTP_AUTHORIZATION="Bearer scrape-secret")
    response = api_client.get("/metrics")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    found = families(response)
    latency = found["kai_http_request_duration_seconds"]
    routes = {s.labels.get("route") for s in latency.samples}
    assert "api/v1/auth/me" in routes
    assert {"kai_workers_alive", "kai_queue_depth", "kai_socket_connections"} <= set(found)
    queues = {s.labels["queue"] for s in found["kai_queue_depth"].samples}
    assert settings.CELERY_TASK_DEFAULT_QUEUE in queues


def test_production_without_a_token_refuses(api_client, settings):
    settings.KAI_METRICS_TOKEN = ""
    settings.PRODUCTION = True
    assert api_client.get("/metrics").status_code == 403
