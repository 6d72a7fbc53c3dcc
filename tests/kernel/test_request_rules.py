"""Rules the OpenAPI document states for every operation and the kernel enforces
(``kai_platform.api.schema.request_rules``, ``kai_platform.tenancy.viewsets.check_request_rules``), and the
foreign-key list filter (``kai_platform.api.filters.AnyIdModelChoiceFilter``)."""

import uuid

import pytest

from tests.helpers import assert_envelope

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def document(django_db_setup, django_db_blocker):
    from drf_spectacular.generators import SchemaGenerator

    with django_db_blocker.unblock():
        return SchemaGenerator().get_schema(request=None, public=True)


def test_a_put_without_a_body_is_a_400_and_an_empty_object_changes_nothing(owner_client, settings):
    settings.KAI_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    created = owner_client.post(
        "/api/v1/webhooks", {"url": "http://127.0.0.1:9/hook", "events": ["execution.failed"]}, format="json"
    )
    assert created.status_code == 201, created.content
    url = f"/api/v1/webhooks/{created.json()['id']}"
    assert_envelope(owner_client.put(url), 400, code="GENERAL_001")
    assert_envelope(owner_client.put("/api/v1/retention"), 400, code="GENERAL_001")
    assert_envelope(owner_client.put("/api/v1/audit"), 405)  # a route without PUT says so first
    assert_envelope(owner_client.put(f"/api/v1/files/{uuid.uuid4()}"), 405)  # (a viewset whose methods omit it)
    assert owner_client.put(url, {}, format="json").status_code == 200
    assert owner_client.put(url, {"description": "partial"}, format="json").json()["description"] == "partial"


def test_the_document_says_put_bodies_are_partial_and_required(document):
    body = document["paths"]["/api/v1/webhooks/{id}"]["put"]["requestBody"]
    assert body["required"] is True
    component = body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert component == "PatchedWebhookRequest" and not document["components"]["schemas"][component].get("required")
    for path, item in document["paths"].items():
        if "put" in item and "requestBody" in item["put"]:
            assert item["put"]["requestBody"]["required"] is True, path


def test_nul_is_refused_in_the_query_and_the_document_says_so(owner_client, document):
    assert_envelope(owner_client.get("/api/v1/system/logs?logger=a%00b"), 400, code="GENERAL_001")
    assert owner_client.get("/api/v1/system/logs?logger=ab").status_code == 200
    name = document["components"]["schemas"]["PatchedWebhookRequest"]["properties"]["description"]
    assert name["pattern"] == "^[^\\u0000]*$"


def test_a_foreign_key_filter_takes_any_well_formed_id(owner_client):
    assert owner_client.get(f"/api/v1/voice/commands?target_agent={uuid.uuid4()}").json()["items"] == []
    assert_envelope(owner_client.get("/api/v1/voice/commands?target_agent=not-an-id"), 400, code="GENERAL_001")


def test_whitespace_only_text_is_refused_and_the_document_says_so(owner_client, document):
    """DRF trims text fields (Python's whitespace, ``\\x1c`` included) and refuses them blank: the pattern of
    such a field asks for something besides whitespace; a field that keeps whitespace (``api_key``) does not."""
    import re

    properties = document["components"]["schemas"]["ProviderRequest"]["properties"]
    pattern = re.compile(properties["name"]["pattern"])
    assert properties["api_key"]["pattern"] == "^[^\\u0000]*$"
    for blank in ("\x1c", " \t\u3000"):
        assert pattern.match(blank) is None
        response = owner_client.post("/api/v1/providers", {"name": blank, "provider": "openai"}, format="json")
        assert_envelope(response, 400, code="GENERAL_001")
    assert pattern.match(" a\x1c")
    assert (
        owner_client.post("/api/v1/providers", {"name": " a\x1c", "provider": "openai"}, format="json").status_code
        == 201
    )


def test_a_body_with_required_fields_or_variants_is_required(owner_client, document):
    """``executions`` (one variant per target) and ``crews/import`` (a file) answer 400 to no body at all:
    the document marks their bodies required."""
    for path in ("/api/v1/executions", "/api/v1/crews/import"):
        assert document["paths"][path]["post"]["requestBody"]["required"] is True
        assert_envelope(owner_client.post(path), 400, code="GENERAL_001")


def test_the_document_is_openapi_31_and_states_that_no_key_or_nested_string_holds_nul(owner_client, document):
    """OpenAPI 3.1 (JSON Schema 2020-12) states the key rule (``propertyNames``) that 3.0 could only put in
    words; a free-form value refers to ``JSONValue``, which states it at every depth. The server refuses
    U+0000 in a key, nested or not (PostgreSQL's jsonb cannot store it), in the one envelope."""
    import re

    assert document["openapi"] == "3.1.0"
    value = document["components"]["schemas"]["JSONValue"]
    assert value["propertyNames"] == {"pattern": "^[^\\u0000]*$"} and value["pattern"] == "^[^\\u0000]*$"
    assert value["items"] == value["additionalProperties"] == {"$ref": "#/components/schemas/JSONValue"}
    content = document["components"]["schemas"]["MemoryRequest"]["properties"]["content"]["anyOf"][0]
    assert content["propertyNames"] == {"pattern": "^[^\\u0000]*$"}
    assert content["additionalProperties"] == {"$ref": "#/components/schemas/JSONValue"}
    assert not re.search(value["propertyNames"]["pattern"], "a\x00b")
    agent = owner_client.post("/api/v1/agents", {"name": "nul-keys", "llm": "builtin"}, format="json").json()
    url = f"/api/v1/agents/{agent['id']}/memory"
    for content in ({"a\x00b": 1}, {"a": [{"b\x00": 1}]}, {"a": {"b": "c\x00"}}):
        assert_envelope(owner_client.post(url, {"content": content}, format="json"), 400, code="GENERAL_001")
    assert owner_client.post(url, {"content": {"a": [{"b": 1}]}}, format="json").status_code == 201


def test_an_integer_field_takes_a_whole_json_number(owner_client, document):
    """JSON Schema 2020-12 counts 1.0 as an integer: what the document's ``type: integer`` admits, the
    server takes (``2.5``, ``true`` and ``"5"`` stay refused)."""
    assert document["components"]["schemas"]["PatchedRetentionPolicyRequest"]["properties"]["events_days"]
    assert owner_client.put("/api/v1/retention", {"events_days": 30.0}, format="json").json()["events_days"] == 30
    for wrong in (30.5, True, "30"):
        assert_envelope(owner_client.put("/api/v1/retention", {"events_days": wrong}, format="json"), 400)


def test_a_url_field_states_what_djangos_url_validator_takes(owner_client, document, settings):
    """``format: uri`` admitted ``a:`` or ``urn:x`` and refused IRIs Django takes (``http://ä^@a.com``): a URL
    field's schema is Django's URL rule as a pattern, so a URL the document admits is one the server takes
    (webhooks must also resolve to a public address)."""
    import re

    from django.core.exceptions import ValidationError
    from django.core.validators import URLValidator

    from kai_platform.api.url_pattern import HTTP_URL_SCHEMES

    schemas = document["components"]["schemas"]
    fields = [  # any URL Django takes (an SSO redirect), and a webhook's target: http or https only
        (schemas["SSOConnectionRequest"]["properties"]["redirect_uris"]["items"], URLValidator()),
        (schemas["WebhookRequest"]["properties"]["url"], URLValidator(schemes=HTTP_URL_SCHEMES)),
    ]
    for url, validate in fields:
        assert "format" not in url and "253" in url["description"]
        pattern = re.compile(url["pattern"])
        for value in (
            *("http://a.com", "HTTPS://Ex-1.COM:8080/p?q#f", "ftp://localhost", "http://[::1]:80/", "ftps://a.com"),
            *("a:", "urn:x", "http://a", "gopher://a.com", "http://[::::]/", "http://a.com/ x", "http://#:x@a.com"),
            *("http://256.1.1.1", "http://-a.com", "http://a.c0m", "http://a.com/\x1c", "http://é.com"),
            *("http://ä^@a.com.", "http://u:p@1.2.3.4"),
            *("http://a-.com", "http://a--b.c-d.com", "http://a.b-.com", "http://a.-b.com", "http://a.xn--p1ai"),
            *(f"http://{'a' * 63}.com", f"http://{'a' * 64}.com", f"http://a.{'b' * 64}.com", "http://a..com"),
        ):
            try:
                validate(value)
                accepted = True
            except ValidationError:
                accepted = False
            assert (pattern.fullmatch(value) is not None) is accepted, (value, validate.schemes)
    settings.KAI_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    for value in ("a:", "urn:x", "http://a"):
        body = {"url": value, "events": ["execution.failed"]}
        assert_envelope(owner_client.post("/api/v1/webhooks", body, format="json"), 400, code="GENERAL_001")
    body = {"url": "http://127.0.0.1:9/hook", "events": ["execution.failed"]}
    assert owner_client.post("/api/v1/webhooks", body, format="json").status_code == 201


def test_an_event_stream_documents_one_event(document):
    """schemathesis (and an SSE client) reads ``text/event-stream`` as a sequence of events and checks each
    against the schema: the document describes one event (``{event, data, id, retry}``), not the raw text."""
    content = document["paths"]["/api/v1/agents/{id}/stream-prompt"]["post"]["responses"]["200"]["content"]
    event = content["text/event-stream"]["schema"]
    assert event["type"] == "object" and event["required"] == ["data"]
    assert event["properties"]["data"]["contentMediaType"] == "application/json"


def test_a_document_file_part_is_spelled_the_31_way(document):
    """A multipart ``oneOf`` variant's file as ``format: binary`` stopped schemathesis' fuzzing under 3.1
    ("Unsupported type: 'Binary'"); 3.1 spells a file part ``contentMediaType``."""
    variants = document["components"]["schemas"]["DocumentCreateRequest"]["oneOf"]
    assert variants[0]["properties"]["file"] == {"type": "string", "contentMediaType": "application/octet-stream"}
