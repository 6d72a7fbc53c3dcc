"""One error envelope for every failure (DESIGN §6), X-Request-ID, API-Version, paths."""

import pytest
from django.test import override_settings

from kai_platform.api.errors import codes
from tests.helpers import assert_envelope

pytestmark = pytest.mark.django_db


def test_malformed_json_is_400(owner_client):
    response = owner_client.generic("POST", "/api/v1/auth/tokens", b'{"name": ', content_type="application/json")
    body = assert_envelope(response, 400, codes.VALIDATION_ERROR)
    assert body["type"] == "parse_error" and "Malformed JSON" in body["detail"]


def test_wrong_types_name_each_field(owner_client):
    response = owner_client.post("/api/v1/auth/tokens", {"name": ["a"], "expires_at": "tomorrow-ish"}, format="json")
    body = assert_envelope(response, 400, codes.VALIDATION_ERROR)
    assert {e["field"] for e in body["errors"]} == {"name", "expires_at"}
    assert body["type"] == "validation_error"


def test_unknown_fields_are_refused(owner_client):
    response = owner_client.post("/api/v1/auth/tokens", {"name": "k", "colour": "red"}, format="json")
    body = assert_envelope(response, 400)
    assert body["errors"] == [{"field": "colour", "message": "Unknown field."}]


def test_body_that_is_not_an_object(owner_client):
    assert_envelope(owner_client.post("/api/v1/auth/tokens", [1, 2], format="json"), 400)


def test_missing_credentials_is_401(api_client):
    response = api_client.get("/api/v1/auth/tokens")
    body = assert_envelope(response, 401, codes.UNAUTHORIZED)
    assert body["type"] == "not_authenticated"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_role_refusal_is_403(make_member, client_for):
    user = make_member("user")
    response = client_for(user).post("/api/v1/config/system", {"settings": {"a": 1}}, format="json")
    body = assert_envelope(response, 403, codes.UNAUTHORIZED)
    assert body["type"] == "permission_denied" and "admin" in body["detail"]


def test_unknown_route_and_unknown_object_are_404(owner_client):
    body = assert_envelope(owner_client.get("/api/v1/no-such-thing"), 404)
    assert "no-such-thing" in body["detail"]
    assert_envelope(owner_client.get("/api/v1/auth/tokens/00000000-0000-0000-0000-000000000000"), 404)
    assert_envelope(owner_client.get("/api/v1/auth/tokens/not-a-uuid"), 404)


def test_method_not_allowed_is_405(owner_client):
    body = assert_envelope(owner_client.delete("/api/v1/auth/me"), 405)
    assert body["type"] == "method_not_allowed"


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1024)
def test_huge_body_is_413_before_parsing(owner_client):
    response = owner_client.post("/api/v1/auth/tokens", {"name": "x" * 5000}, format="json")
    body = assert_envelope(response, 413)
    assert body["type"] == "payload_too_large"


def test_request_id_is_echoed_or_generated(owner_client):
    echoed = owner_client.get("/api/v1/auth/me", HTTP_X_REQUEST_ID="trace-abc.123")
    assert echoed["X-Request-ID"] == "trace-abc.123"
    generated = owner_client.get("/api/v1/auth/me", HTTP_X_REQUEST_ID="bad id with spaces\n")
    assert generated["X-Request-ID"] != "bad id with spaces\n" and len(generated["X-Request-ID"]) == 32
    error = owner_client.get("/api/v1/nope", HTTP_X_REQUEST_ID="req-42")
    assert error.json()["request_id"] == "req-42"


def test_api_version_header_and_both_prefixes_and_trailing_slash(owner_client):
    for path in ("/api/v1/auth/me", "/api/auth/me", "/api/v1/auth/me/", "/api/auth/me/"):
        response = owner_client.get(path)
        assert response.status_code == 200, path
        assert response["API-Version"] == "v1"


def test_dependency_outage_is_503_general_004(owner_client, monkeypatch):
    from django.db import OperationalError

    from apps.accounts import views

    def boom(**kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(views.selectors, "memberships_of", boom)
    body = assert_envelope(owner_client.get("/api/v1/auth/me"), 503, codes.SERVICE_UNAVAILABLE)
    assert "connection refused" not in body["detail"]


def test_unexpected_error_is_500_envelope_without_internals(owner_client, monkeypatch):
    from apps.accounts import views

    def boom(**kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(views.selectors, "memberships_of", boom)
    body = assert_envelope(owner_client.get("/api/v1/auth/me"), 500, codes.INTERNAL_SERVER_ERROR)
    assert "secret" not in body["detail"]


def test_pagination_shape_and_limit_cap(make_member, client_for):
    member = make_member()
    client = client_for(member)
    for i in range(3):
        client.post("/api/v1/auth/tokens", {"name": f"k{i}"}, format="json")
    page = client.get("/api/v1/auth/tokens?limit=2&offset=1").json()
    assert set(page) == {"items", "total", "limit", "offset", "has_more"}
    assert (page["total"], page["limit"], page["offset"], len(page["items"]), page["has_more"]) == (3, 2, 1, 2, False)
    capped = client.get("/api/v1/auth/tokens?limit=100000").json()
    assert capped["limit"] == 100
    assert client.get("/api/v1/auth/tokens?limit=2").json()["has_more"] is True


def test_an_offset_past_any_table_is_an_empty_page_not_a_500(make_member, client_for):
    client = client_for(make_member())
    client.post("/api/v1/auth/tokens", {"name": "k"}, format="json")
    page = client.get("/api/v1/auth/tokens?offset=2465723699336835292463104").json()
    assert (page["items"], page["total"], page["has_more"]) == ([], 1, False)
    assert page["offset"] == 2**62
