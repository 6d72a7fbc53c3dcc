"""Deploy settings: production turns on secure cookies, HSTS and HTTPS redirects, takes its allowed
hosts and CORS origins from the environment only, and the server honours both (``check --deploy``
clean: tests/kernel/test_settings.py)."""

from __future__ import annotations

import json

import pytest

from tests.kernel.test_settings import FERNET_KEY, STRONG_KEY

PRINT_SETTINGS = (
    "import json; from django.conf import settings as s; print(json.dumps({k: getattr(s, k) for k in ["
    "'DEBUG', 'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', 'SESSION_COOKIE_HTTPONLY', 'SECURE_SSL_REDIRECT', "
    "'SECURE_HSTS_SECONDS', 'SECURE_CONTENT_TYPE_NOSNIFF', 'X_FRAME_OPTIONS', 'ALLOWED_HOSTS', "
    "'CORS_ALLOWED_ORIGINS', 'CSRF_TRUSTED_ORIGINS', 'SECURE_PROXY_SSL_HEADER']}))"
)


def _production(**env):
    """The settings a production process would run with, given only ``env`` beyond the basics."""
    import os
    import subprocess
    import sys

    from tests.helpers import BASE_DIR

    ambient = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {"SECRET_KEY", "DEBUG", "DJANGO_ENV", "ALLOWED_HOSTS", "CORS_ALLOWED_ORIGINS", "CSRF_TRUSTED_ORIGINS"}
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", PRINT_SETTINGS],
        cwd=BASE_DIR,
        env={**ambient, "DJANGO_ENV": "production", "SECRET_KEY": STRONG_KEY, "KAI_SECRET_KEYS": FERNET_KEY, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_production_cookies_are_secure_and_hosts_and_origins_come_from_the_environment():
    values = _production(
        ALLOWED_HOSTS="kai.example.com,api.kai.example.com",
        CORS_ALLOWED_ORIGINS="https://app.example.com",
        CSRF_TRUSTED_ORIGINS="https://kai.example.com",
    )
    assert values["DEBUG"] is False
    assert values["SESSION_COOKIE_SECURE"] is values["CSRF_COOKIE_SECURE"] is True
    assert values["SESSION_COOKIE_HTTPONLY"] is True
    assert values["SECURE_SSL_REDIRECT"] is True and values["SECURE_HSTS_SECONDS"] >= 31536000
    assert values["SECURE_CONTENT_TYPE_NOSNIFF"] is True and values["X_FRAME_OPTIONS"] == "DENY"
    assert values["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert values["ALLOWED_HOSTS"] == ["kai.example.com", "api.kai.example.com"]
    assert values["CORS_ALLOWED_ORIGINS"] == ["https://app.example.com"]
    assert values["CSRF_TRUSTED_ORIGINS"] == ["https://kai.example.com"]


def test_production_allows_no_host_and_no_origin_by_default():
    values = _production()
    assert values["ALLOWED_HOSTS"] == [] and values["CORS_ALLOWED_ORIGINS"] == []
    assert values["CSRF_TRUSTED_ORIGINS"] == []


@pytest.mark.django_db
def test_a_host_outside_allowed_hosts_is_refused(owner_client, settings):
    settings.ALLOWED_HOSTS = ["kai.example.com"]
    assert owner_client.get("/api/v1/auth/me", HTTP_HOST="kai.example.com").status_code == 200
    refused = owner_client.get("/api/v1/auth/me", HTTP_HOST="evil.example")
    assert refused.status_code == 400
    assert refused.json()["code"]


@pytest.mark.django_db
def test_cors_answers_only_the_configured_origins(owner_client, api_client, settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example.com"]
    preflight = api_client.options(
        "/api/v1/agents",
        HTTP_ORIGIN="https://app.example.com",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type, x-organization",
    )
    assert preflight["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert {"authorization", "x-organization"} <= {
        h.strip() for h in preflight["Access-Control-Allow-Headers"].split(",")
    }
    allowed = owner_client.get("/api/v1/auth/me", HTTP_ORIGIN="https://app.example.com")
    assert allowed["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "x-ratelimit-remaining" in allowed["Access-Control-Expose-Headers"]
    foreign = owner_client.get("/api/v1/auth/me", HTTP_ORIGIN="https://evil.example")
    assert "Access-Control-Allow-Origin" not in foreign
    evil_preflight = api_client.options(
        "/api/v1/agents", HTTP_ORIGIN="https://evil.example", HTTP_ACCESS_CONTROL_REQUEST_METHOD="DELETE"
    )
    assert "Access-Control-Allow-Origin" not in evil_preflight
    assert "Access-Control-Allow-Origin" not in owner_client.get("/admin/login/", HTTP_ORIGIN="https://app.example.com")
