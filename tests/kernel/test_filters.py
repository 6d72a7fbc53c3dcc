"""The list filters' input checks (kai_platform/api/filters.py)."""

import pytest

from tests.helpers import assert_envelope

pytestmark = pytest.mark.django_db


def test_a_boolean_filter_refuses_what_is_not_a_boolean(owner_client):
    """django-filter ignores ``?voice_enabled=null`` (an unfiltered list); the API answers 400 (schemathesis)."""
    assert owner_client.get("/api/v1/agents?voice_enabled=true").status_code == 200
    assert owner_client.get("/api/v1/agents?voice_enabled=0").status_code == 200
    assert_envelope(owner_client.get("/api/v1/agents?voice_enabled=null"), 400, code="GENERAL_001")
    assert_envelope(owner_client.get("/api/v1/agents?voice_enabled=true&voice_enabled=maybe"), 400)


def test_a_typed_filter_refuses_an_empty_value(owner_client):
    assert owner_client.get("/api/v1/files?uploaded_by=").status_code == 400
    assert owner_client.get("/api/v1/files").status_code == 200


def test_a_choice_filter_refuses_an_empty_value_and_one_outside_its_enum(owner_client):
    """The document gives ``trigger_type``/``provider_type`` an enum: ``?trigger_type=`` is not in it."""
    for url in ("/api/v1/workflows?trigger_type=", "/api/v1/models?provider_type=", "/api/v1/models?provider_type=x"):
        assert_envelope(owner_client.get(url), 400, code="GENERAL_001")
    assert owner_client.get("/api/v1/workflows?trigger_type=manual").status_code == 200
    assert owner_client.get("/api/v1/models?provider_type=openai").status_code == 200
