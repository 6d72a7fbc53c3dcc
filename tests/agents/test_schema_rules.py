"""Rules of the agents app's bodies that the document states and the server holds alike: a body the document
accepts is accepted, one it refuses is a 400 (providers' base_url; a memory's content is not null)."""

import jsonschema
import pytest

from tests.helpers import assert_envelope

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def document(django_db_setup, django_db_blocker):
    from drf_spectacular.generators import SchemaGenerator

    with django_db_blocker.unblock():
        return SchemaGenerator().get_schema(request=None, public=True)


def _valid(document, component, body) -> bool:
    schema = {"$ref": f"#/components/schemas/{component}", "components": document["components"]}
    return jsonschema.Draft7Validator(schema).is_valid(body)


BODIES = [
    ({"name": "a", "provider": "vllm"}, False),
    ({"name": "b", "provider": "vllm", "base_url": ""}, False),
    ({"name": "c", "provider": "vllm", "base_url": "https://vllm.example.com/v1"}, True),
    ({"name": "d", "provider": "azure", "base_url": "https://example.com/openai"}, True),
    ({"name": "e", "provider": "openai"}, True),
    ({"name": "f", "provider": "builtin"}, True),
]


@pytest.mark.parametrize(("body", "valid"), BODIES)
def test_a_create_body_holds_the_base_url_rule_in_the_document_and_on_the_server(document, owner_client, body, valid):
    assert _valid(document, "ProviderRequest", body) is valid
    response = owner_client.post("/api/v1/providers", body, format="json")
    if valid:
        assert response.status_code == 201, response.content
    else:
        assert_envelope(response, 400, code="GENERAL_001")


@pytest.mark.parametrize("method", ["put", "patch"])
def test_an_update_that_sets_such_a_type_names_its_base_url(document, owner_client, method):
    created = owner_client.post(
        "/api/v1/providers", {"name": "p", "provider": "vllm", "base_url": "https://vllm.example.com/v1"}, format="json"
    ).json()
    url = f"/api/v1/providers/{created['id']}"
    call = getattr(owner_client, method)
    assert not _valid(document, "PatchedProviderRequest", {"provider": "azure"})
    assert_envelope(call(url, {"provider": "azure"}, format="json"), 400, code="GENERAL_001")
    moved = {"provider": "azure", "base_url": "https://example.com/openai"}
    assert _valid(document, "PatchedProviderRequest", moved)
    assert call(url, moved, format="json").status_code == 200
    assert _valid(document, "PatchedProviderRequest", {"name": "renamed"})  # the stored base_url counts
    assert call(url, {"name": "renamed"}, format="json").status_code == 200
    assert call(url, {"provider": "openai"}, format="json").json()["provider"] == "openai"


def test_a_memory_content_is_any_json_value_but_null(document, owner_client):
    agent = owner_client.post("/api/v1/agents", {"name": "Keeper"}, format="json").json()
    url = f"/api/v1/agents/{agent['id']}/memory"
    for content in ("fact", 3, True, ["a"], {"k": "v"}):
        assert _valid(document, "MemoryRequest", {"content": content})
        assert owner_client.post(url, {"content": content}, format="json").status_code == 201
    assert not _valid(document, "MemoryRequest", {"content": None})
    assert_envelope(owner_client.post(url, {"content": None}, format="json"), 400, code="GENERAL_001")


def test_memory_since_empty_priority_strictness_and_mcp_bodies(owner_client, document):
    agent = owner_client.post("/api/v1/agents", {"name": "Strict"}, format="json").json()
    assert_envelope(owner_client.get(f"/api/v1/agents/{agent['id']}/memory?since="), 400, code="GENERAL_001")
    for priority in ("5", True, 2.5):  # the document: low|normal|high or an integer 0…9
        body = {"agent_id": agent["id"], "description": "x", "priority": priority}
        assert_envelope(owner_client.post("/api/v1/executions", body, format="json"), 400, code="GENERAL_001")
    assert_envelope(owner_client.post("/api/v1/mcp", ["not", "an", "object"], format="json"), 400)
    mcp_body = document["paths"]["/api/v1/mcp"]["post"]["requestBody"]
    assert mcp_body["required"] is True  # no body at all is a 400
    assert mcp_body["content"]["application/json"]["schema"]["type"] == "object"
    assert "x-kai-body-required" not in mcp_body["content"]["application/json"]["schema"]
    assert "200" in document["paths"]["/api/v1/deployments/{id}"]["delete"]["responses"]
    voice = document["paths"]["/api/v1/agents/{id}/voice"]["post"]["requestBody"]
    assert voice["required"] is True


def test_credential_data_holds_its_value_and_string_fields(owner_client):
    body = {"name": "k", "service_name": "svc", "credential_type": "api_key", "credential_data": {"value": "s"}}
    numbers = {**body, "credential_data": {"value": "s", "additional_fields": {"port": 5432}}}
    assert_envelope(owner_client.post("/api/v1/credentials", numbers, format="json"), 400, code="GENERAL_001")
    created = owner_client.post("/api/v1/credentials", body, format="json")
    assert created.status_code == 201, created.content
    url = f"/api/v1/credentials/{created.json()['id']}"
    for method in (owner_client.put, owner_client.patch):  # partial bodies, but credential_data carries its value
        assert_envelope(method(url, {"credential_data": {}}, format="json"), 400, code="GENERAL_001")
        assert method(url, {"name": "renamed"}, format="json").status_code == 200
