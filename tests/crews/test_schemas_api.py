"""/api/v1/schemas: the organization's JSON Schemas for structured output — CRUD, versions kept on
every change of the document, invalid schemas refused, ``name@version`` references resolved."""

from __future__ import annotations

import pytest

from apps.schemas.selectors import schema_document

pytestmark = pytest.mark.django_db

V1 = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}
V2 = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "year": {"type": "integer"}},
    "required": ["title", "year"],
}


def test_create_update_versions_and_references(member, client_for):
    client = client_for(member)
    created = client.post("/api/v1/schemas", {"name": "report", "description": "A report", "schema": V1}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["version"] == 1 and body["schema"] == V1
    pk = body["id"]
    same = client.patch(f"/api/v1/schemas/{pk}", {"description": "Reports"}, format="json").json()
    assert same["version"] == 1 and same["description"] == "Reports"  # no new document, no new version
    changed = client.put(f"/api/v1/schemas/{pk}", {"schema": V2}, format="json").json()
    assert changed["version"] == 2 and changed["schema"] == V2
    versions = client.get(f"/api/v1/schemas/{pk}/versions").json()
    assert [(v["version"], v["schema"]) for v in versions["items"]] == [(2, V2), (1, V1)]
    assert schema_document(organization=member.organization, reference="report") == (V2, "report@2")
    assert schema_document(organization=member.organization, reference="report@1") == (V1, "report@1")
    assert schema_document(organization=member.organization, reference="report@7") is None
    listed = client.get("/api/v1/schemas", {"name": "report"}).json()
    assert [s["name"] for s in listed["items"]] == ["report"]
    assert client.delete(f"/api/v1/schemas/{pk}").status_code == 204
    assert schema_document(organization=member.organization, reference="report") is None


def test_invalid_documents_and_duplicate_names_are_refused_in_the_envelope(member, client_for):
    client = client_for(member)
    bad = client.post("/api/v1/schemas", {"name": "bad", "schema": {"type": "objekt"}}, format="json")
    assert bad.status_code == 422 and "not a valid JSON Schema" in bad.json()["detail"]
    assert client.post("/api/v1/schemas", {"name": "bad", "schema": [1]}, format="json").status_code in (400, 422)
    for document in ({"$schema": 5}, {"$schema": "https://example.com/unknown"}, {"properties": []}):
        refused = client.post("/api/v1/schemas", {"name": "bad", "schema": document}, format="json")
        assert refused.status_code == 422, (document, refused.content)
    assert client.post("/api/v1/schemas", {"name": "has space", "schema": V1}, format="json").status_code == 400
    assert client.post("/api/v1/schemas", {"name": "ok", "schema": V1}, format="json").status_code == 201
    duplicate = client.post("/api/v1/schemas", {"name": "ok", "schema": V1}, format="json")
    assert duplicate.status_code == 409
    pk = client.get("/api/v1/schemas").json()["items"][0]["id"]
    assert client.patch(f"/api/v1/schemas/{pk}", {"schema": {"type": 5}}, format="json").status_code == 422
    assert client.get(f"/api/v1/schemas/{pk}").json()["version"] == 1  # nothing half-written


def test_another_organization_gets_404(member, make_member, client_for):
    created = client_for(member).post("/api/v1/schemas", {"name": "mine", "schema": V1}, format="json").json()
    other = client_for(make_member("owner"))
    assert other.get(f"/api/v1/schemas/{created['id']}").status_code == 404
    assert other.get(f"/api/v1/schemas/{created['id']}/versions").status_code == 404
    assert schema_document(organization=make_member("owner").organization, reference="mine") is None
