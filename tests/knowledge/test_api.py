"""Knowledge bases and documents over the API: ingestion (run in-process here; the worker test is
test_worker.py), search modes and filters, re-ingest, delete, limits, roles, isolation."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.events.models import Event
from apps.files.models import StoredFile
from apps.knowledge import services
from apps.knowledge.ingest import document_ingest
from apps.knowledge.models import Chunk, Document
from tests.helpers import assert_envelope
from tests.knowledge.samples import docx_bytes, pdf_bytes

pytestmark = pytest.mark.django_db
B = "/api/v1/knowledge-bases"

OTTERS = (
    "Sea otters live along the Pacific coast. They float on their backs and crack shellfish with stones. "
    "An otter can hold its breath for five minutes."
)
MARKETS = "Quarterly revenue grew by twelve percent. The board approved a dividend and a share buyback."


def _kb(client, **extra):
    response = client.post(B, {"name": extra.pop("name", "Docs"), **extra}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def _ingest_all():
    for doc in Document.objects.filter(status__in=["PENDING", "FAILED"]):
        document_ingest(document_id=doc.pk, version=doc.version)


def _add_text(client, kb, name, text, **extra):
    response = client.post(f"{B}/{kb['id']}/documents", {"name": name, "text": text, **extra}, format="json")
    assert response.status_code == 202, response.content
    return response.json()


def test_create_ingest_and_search_in_every_mode(owner_client, django_capture_on_commit_callbacks):
    kb = _kb(owner_client, chunk_size=20, chunk_overlap=3)
    with django_capture_on_commit_callbacks() as callbacks:
        doc = _add_text(owner_client, kb, "otters.txt", OTTERS, metadata={"topic": "animals"})
    assert doc["status"] == "PENDING" and doc["bytes"] == len(OTTERS.encode())
    queued = [c for c in callbacks if getattr(c, "func", None) is services._enqueue]
    assert [c.args for c in queued] == [(Document.objects.get(pk=doc["id"]).pk, 1)]  # queued on commit
    _add_text(owner_client, kb, "markets.txt", MARKETS, metadata={"topic": "finance"})
    _ingest_all()
    body = owner_client.get(f"{B}/{kb['id']}/documents/{doc['id']}").json()
    assert body["status"] == "READY" and body["chunk_count"] >= 2 and body["error"] == ""
    assert owner_client.get(f"{B}/{kb['id']}").json()["document_count"] == 2
    for mode in ("hybrid", "vector", "text"):
        items = owner_client.post(
            f"{B}/{kb['id']}/search",
            {"query": "how long can an otter hold its breath", "mode": mode, "top_k": 3},
            format="json",
        ).json()["items"]
        assert items, mode
        assert items[0]["document_name"] == "otters.txt", (mode, items)
        assert set(items[0]) >= {"chunk_id", "document_id", "document_name", "text", "score", "position"}
        assert all(isinstance(i["metadata"], dict) for i in items), items  # an object, as documented
        assert [i["score"] for i in items] == sorted((i["score"] for i in items), reverse=True)
    hits = owner_client.post(
        f"{B}/{kb['id']}/search", {"query": "otter", "filters": {"metadata": {"topic": "finance"}}}, format="json"
    ).json()["items"]
    assert hits and all(h["document_name"] == "markets.txt" for h in hits)
    hits = owner_client.post(
        f"{B}/{kb['id']}/search", {"query": "revenue", "filters": {"document_id": doc["id"]}}, format="json"
    ).json()["items"]
    assert all(h["document_id"] == doc["id"] for h in hits)
    progress = Event.objects.filter(type="knowledge.document.progress", data__document_id=doc["id"])
    assert progress.exists() and progress.order_by("-id").first().data["done"] == body["chunk_count"]
    statuses = list(
        Event.objects.filter(type="knowledge.document.status", data__document_id=doc["id"])
        .order_by("id")
        .values_list("data__status", flat=True)
    )
    assert statuses == ["PENDING", "PROCESSING", "READY"]


def test_search_input_is_checked(owner_client):
    kb = _kb(owner_client)
    assert_envelope(owner_client.post(f"{B}/{kb['id']}/search", {"query": "x", "top_k": 51}, format="json"), 400)
    assert_envelope(owner_client.post(f"{B}/{kb['id']}/search", {"query": "x", "mode": "fuzzy"}, format="json"), 400)
    assert_envelope(owner_client.post(f"{B}/{kb['id']}/search", {}, format="json"), 400)
    assert owner_client.post(f"{B}/{kb['id']}/search", {"query": "nothing here"}, format="json").json() == {"items": []}


@pytest.mark.parametrize(
    "name,data,needle",
    [
        ("notes.md", b"# Otters\n\nThey use stones as tools.", "stones"),
        ("page.html", b"<html><body><p>Beavers build dams</p><script>evil()</script></body></html>", "dams"),
        ("rows.csv", b"animal,food\nheron,fish\n", "heron"),
        ("data.json", b'{"animal": {"name": "kingfisher"}}', "kingfisher"),
        ("scan.pdf", pdf_bytes(["Salmon swim upstream to spawn"]), "Salmon"),
        ("memo.docx", docx_bytes(["Walruses have tusks"]), "Walruses"),
    ],
)
def test_uploaded_files_of_every_format_are_indexed(owner_client, name, data, needle):
    kb = _kb(owner_client)
    response = owner_client.post(
        f"{B}/{kb['id']}/documents", {"file": SimpleUploadedFile(name, data)}, format="multipart"
    )
    assert response.status_code == 202, response.content
    _ingest_all()
    doc = Document.objects.get(pk=response.json()["id"])
    assert doc.status == "READY", doc.error
    assert doc.file is not None and doc.bytes == len(data)
    text = " ".join(Chunk.objects.filter(document=doc).values_list("text", flat=True))
    assert needle in text and "evil" not in text
    items = owner_client.post(f"{B}/{kb['id']}/search", {"query": needle, "mode": "text"}, format="json").json()
    assert items["items"][0]["document_id"] == str(doc.pk)


def test_a_failed_document_names_its_error_and_keeps_no_chunks(owner_client):
    kb = _kb(owner_client)
    good = _add_text(owner_client, kb, "ok.txt", OTTERS)
    bad = owner_client.post(
        f"{B}/{kb['id']}/documents", {"file": SimpleUploadedFile("b.pdf", b"%PDF-1.4 broken")}, format="multipart"
    ).json()
    _ingest_all()
    body = owner_client.get(f"{B}/{kb['id']}/documents/{bad['id']}").json()
    assert body["status"] == "FAILED" and "unreadable PDF" in body["error"] and body["chunk_count"] == 0
    assert not Chunk.objects.filter(document_id=bad["id"]).exists()
    assert Chunk.objects.filter(document_id=good["id"]).exists()


def test_reingest_replaces_the_index_and_stale_tasks_do_nothing(owner_client, member):
    kb = _kb(owner_client, chunk_size=200)
    doc = _add_text(owner_client, kb, "o.txt", OTTERS)
    _ingest_all()
    old_ids = set(Chunk.objects.filter(document_id=doc["id"]).values_list("id", flat=True))
    assert document_ingest(document_id=doc["id"], version=1) == "skipped"  # READY already: idempotent
    response = owner_client.post(f"{B}/{kb['id']}/documents/{doc['id']}/reingest")
    assert response.status_code == 202 and response.json()["version"] == 2
    assert document_ingest(document_id=doc["id"], version=1) == "skipped"  # an old message
    assert document_ingest(document_id=doc["id"], version=2) == "ready"
    new_ids = set(Chunk.objects.filter(document_id=doc["id"]).values_list("id", flat=True))
    assert new_ids and not (new_ids & old_ids)
    # a change of the chunking re-ingests every document of the base
    owner_client.patch(f"{B}/{kb['id']}", {"chunk_size": 20, "chunk_overlap": 2}, format="json")
    assert Document.objects.get(pk=doc["id"]).status == "PENDING"
    _ingest_all()
    assert Chunk.objects.filter(document_id=doc["id"]).count() > len(new_ids)


def test_deleting_a_document_or_a_base_removes_its_chunks(owner_client):
    kb = _kb(owner_client)
    one = _add_text(owner_client, kb, "1.txt", OTTERS)
    two = _add_text(owner_client, kb, "2.txt", MARKETS)
    _ingest_all()
    assert owner_client.delete(f"{B}/{kb['id']}/documents/{one['id']}").status_code == 204
    assert not Chunk.objects.filter(document_id=one["id"]).exists()
    assert Chunk.objects.filter(document_id=two["id"]).exists()
    upload = owner_client.post(
        f"{B}/{kb['id']}/documents", {"file": SimpleUploadedFile("u.txt", b"Uploaded.")}, format="multipart"
    ).json()
    file_id = Document.objects.get(pk=upload["id"]).file_id
    assert owner_client.delete(f"{B}/{kb['id']}").status_code == 204
    assert not Chunk.objects.filter(knowledge_base_id=kb["id"]).exists()
    assert not StoredFile.objects.filter(pk=file_id).exists()  # its uploads go with it


def test_plan_limits_refuse_documents_chunks_and_bytes(owner_client, member):
    member.organization.settings = {"knowledge_limits": {"documents": 2, "bytes": 300, "chunks": 1000}}
    member.organization.save()
    kb = _kb(owner_client)
    _add_text(owner_client, kb, "a.txt", "short one")
    too_big = owner_client.post(f"{B}/{kb['id']}/documents", {"name": "big", "text": "x " * 400}, format="json")
    assert_envelope(too_big, 413)
    assert too_big.json()["usage"]["bytes"] == 9
    _add_text(owner_client, kb, "b.txt", "short two")
    assert_envelope(
        owner_client.post(f"{B}/{kb['id']}/documents", {"name": "c", "text": "three"}, format="json"),
        429,
        "GENERAL_002",
    )
    _ingest_all()  # a.txt and b.txt: one chunk each
    member.organization.settings = {"knowledge_limits": {"chunks": 2}}
    member.organization.save()
    assert_envelope(
        owner_client.post(f"{B}/{kb['id']}/documents", {"name": "c", "text": "three"}, format="json"),
        429,
        "GENERAL_002",
    )  # at the chunk limit
    member.organization.settings = {"knowledge_limits": {"chunks": 3}}
    member.organization.save()
    doc = _add_text(owner_client, kb, "c.txt", OTTERS + " " + MARKETS)
    Document.objects.filter(pk=doc["id"]).update(version=1)
    kb_row = Document.objects.get(pk=doc["id"]).knowledge_base
    kb_row.chunk_size, kb_row.chunk_overlap = 20, 2
    kb_row.save()  # this one makes several chunks: over the limit
    _ingest_all()
    failed = Document.objects.get(pk=doc["id"])
    assert failed.status == "FAILED" and "chunks" in failed.error


def test_roles_users_read_and_search_developers_write(make_member, client_for):
    owner = make_member("owner")
    user = make_member("user", organization=owner.organization)
    dev = make_member("developer", organization=owner.organization)
    kb = _kb(client_for(owner))
    reader = client_for(user)
    assert reader.get(B).status_code == 200
    assert reader.post(f"{B}/{kb['id']}/search", {"query": "x"}, format="json").status_code == 200
    assert_envelope(reader.post(B, {"name": "mine"}, format="json"), 403)
    assert_envelope(reader.post(f"{B}/{kb['id']}/documents", {"name": "n", "text": "t"}, format="json"), 403)
    assert_envelope(reader.delete(f"{B}/{kb['id']}"), 403)
    assert (
        client_for(dev).post(f"{B}/{kb['id']}/documents", {"name": "n", "text": "t"}, format="json").status_code == 202
    )


def test_a_second_base_of_the_same_name_is_a_conflict(owner_client):
    first = _kb(owner_client, name="Manuals")
    assert_envelope(owner_client.post(B, {"name": "Manuals"}, format="json"), 409)
    other = _kb(owner_client, name="Guides")
    assert_envelope(owner_client.patch(f"{B}/{other['id']}", {"name": "Manuals"}, format="json"), 409)
    assert owner_client.patch(f"{B}/{first['id']}", {"name": "Manuals"}, format="json").status_code == 200


def test_another_organization_gets_404(make_member, client_for):
    a, b = make_member(), make_member()
    kb = _kb(client_for(a))
    doc = _add_text(client_for(a), kb, "a.txt", OTTERS)
    other = client_for(b)
    assert_envelope(other.get(f"{B}/{kb['id']}"), 404)
    assert_envelope(other.get(f"{B}/{kb['id']}/documents"), 404)
    assert_envelope(other.get(f"{B}/{kb['id']}/documents/{doc['id']}"), 404)
    assert_envelope(other.post(f"{B}/{kb['id']}/search", {"query": "otter"}, format="json"), 404)
    assert_envelope(other.post(f"{B}/{kb['id']}/documents", {"name": "x", "text": "y"}, format="json"), 404)
    kb_b = _kb(other)  # b's own base never finds a's chunks
    _ingest_all()
    assert other.post(f"{B}/{kb_b['id']}/search", {"query": "otter"}, format="json").json()["items"] == []


def test_document_bodies_are_checked(owner_client, settings):
    kb = _kb(owner_client)
    assert_envelope(owner_client.post(f"{B}/{kb['id']}/documents", {"text": "no name"}, format="json"), 400)
    assert_envelope(
        owner_client.post(
            f"{B}/{kb['id']}/documents", {"name": "x", "text": "t", "url": "https://e.com"}, format="json"
        ),
        400,
    )
    refused = owner_client.post(f"{B}/{kb['id']}/documents", {"url": "http://127.0.0.1:1/secret"}, format="json")
    assert_envelope(refused, 400)
    assert "private, loopback" in refused.json()["detail"]
    assert_envelope(owner_client.post(B, {"name": "Docs"}, format="json"), 409)  # the name is taken
    assert_envelope(owner_client.post(B, {"name": "E", "embedding_model": "no-such-embedder"}, format="json"), 400)
    assert_envelope(owner_client.post(B, {"name": "F", "chunk_size": 50, "chunk_overlap": 50}, format="json"), 400)


def test_a_document_is_renamed_and_described_in_json_only(owner_client):
    """PATCH takes JSON (``metadata`` is an object, which a form cannot carry): a form body is a 415."""
    kb = _kb(owner_client)
    doc = _add_text(owner_client, kb, "a.txt", OTTERS)
    url = f"{B}/{kb['id']}/documents/{doc['id']}"
    patched = owner_client.patch(url, {"name": "b.txt", "metadata": {"topic": {"kind": "animals"}}}, format="json")
    assert patched.status_code == 200, patched.content
    assert patched.json()["metadata"] == {"topic": {"kind": "animals"}} and patched.json()["name"] == "b.txt"
    assert_envelope(owner_client.patch(url, {"name": "c.txt"}, format="multipart"), 415)
    form = owner_client.patch(url, "name=c.txt", content_type="application/x-www-form-urlencoded")
    assert_envelope(form, 415)
    assert Document.objects.get(pk=doc["id"]).name == "b.txt"


def test_the_document_offers_json_alone_for_a_document_patch(client):
    document = client.get("/api-openapi.json").json()
    body = document["paths"]["/api/v1/knowledge-bases/{knowledge_base_id}/documents/{id}"]["patch"]["requestBody"]
    assert list(body["content"]) == ["application/json"]
