"""The OpenAPI document: generated with zero warnings, /api/v1 only, both security schemes."""

import json

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_schema_generates_without_warnings_and_validates(tmp_path):
    target = tmp_path / "schema.json"
    call_command("spectacular", "--fail-on-warn", "--validate", "--format", "openapi-json", "--file", str(target))
    schema = json.loads(target.read_text())
    paths = list(schema["paths"])
    assert paths and all(p.startswith("/api/v1/") for p in paths)
    assert not any(p.endswith("/") for p in paths)
    assert {"/api/v1/auth/login", "/api/v1/auth/tokens", "/api/v1/events"} <= set(paths)
    schemes = schema["components"]["securitySchemes"]
    assert schemes["jwtAuth"]["bearerFormat"] == "JWT" and schemes["apiKeyAuth"]["scheme"] == "bearer"


@pytest.mark.django_db
def test_docs_pages_are_served(api_client):
    assert api_client.get("/api-openapi.json").status_code == 200
    assert api_client.get("/api-docs").status_code == 200
    assert api_client.get("/api-redoc").status_code == 200
