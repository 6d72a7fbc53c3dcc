"""Files (seed 000): upload/download round trip, caps while streaming, quota, names, isolation."""

import hashlib
import io
import threading
import time

import pytest
from django.core.files.storage import default_storage

from apps.files.models import StoredFile
from apps.files.validation import sanitize_filename, sniff_content_type
from tests.helpers import LiveServer, assert_envelope

pytestmark = pytest.mark.django_db

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40


def upload(client, *files, **fields):
    payload = {"file": [io.BytesIO(content) for _, content in files], **fields}
    for buffer, (name, _) in zip(payload["file"], files):
        buffer.name = name
    return client.post("/api/v1/files/upload", payload, format="multipart")


@pytest.fixture(autouse=True)
def media(tmp_path, settings):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}},
    }
    return tmp_path


def test_round_trip_keeps_bytes_and_sniffs_the_type(owner_client):
    response = upload(owner_client, ("picture.txt", PNG), ("notes.txt", b"plain words\n"))
    assert response.status_code == 201, response.content
    files = response.json()["files"]
    assert [f["name"] for f in files] == ["picture.txt", "notes.txt"]
    picture = files[0]
    assert picture["content_type"] == "image/png"  # from the bytes, not the .txt name or the client
    assert picture["size"] == len(PNG) and picture["sha256"] == hashlib.sha256(PNG).hexdigest()
    assert files[1]["content_type"] == "text/plain"
    download = owner_client.get(f"/api/v1/files/{picture['id']}/download")
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == PNG
    assert download["Content-Disposition"].startswith("attachment;")
    assert 'filename="picture.txt"' in download["Content-Disposition"]
    assert download["X-Content-Type-Options"] == "nosniff" and download["Content-Type"] == "image/png"
    meta = owner_client.get(f"/api/v1/files/{picture['id']}").json()
    assert meta["download_url"].endswith(f"/files/{picture['id']}/download")


def test_list_filters(owner_client):
    upload(owner_client, ("a.png", PNG), ("b.txt", b"text"))
    listed = owner_client.get("/api/v1/files").json()
    assert listed["total"] == 2
    assert [f["name"] for f in owner_client.get("/api/v1/files?content_type=image").json()["items"]] == ["a.png"]
    assert owner_client.get("/api/v1/files?name=b.t").json()["total"] == 1


def test_oversize_file_is_refused_and_nothing_is_stored(owner_client, settings, media):
    settings.KAI_MAX_UPLOAD_MB = 1
    response = upload(owner_client, ("big.bin", b"\x00" * (1024 * 1024 + 1)))
    body = assert_envelope(response, 413)
    assert body["type"] == "payload_too_large" and "1 MB" in body["detail"]
    assert StoredFile.objects.count() == 0
    assert not any(p.is_file() for p in media.rglob("*"))


@pytest.mark.django_db(transaction=True)
def test_a_real_server_refuses_oversize_uploads_with_and_without_content_length(make_member):
    """Through daphne: a body over the total cap is refused from its Content-Length at the ASGI
    boundary; a file over the per-file cap is cut off while it streams; a chunked upload (no
    length, which Django's multipart parser cannot read) is refused with 411."""
    import http.client

    from tests.conftest import jwt_for

    member = make_member()
    server = LiveServer(KAI_MAX_UPLOAD_MB="1", KAI_MAX_UPLOAD_FILES="2")
    token = jwt_for(member.user)["access_token"]
    boundary = "kaiboundary"

    def multipart(size):
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        for _ in range(size // 65536):
            yield b"\x00" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    headers = {"Authorization": f"Bearer {token}", "Content-Type": f"multipart/form-data; boundary={boundary}"}
    try:
        sized = b"".join(multipart(4 * 1024 * 1024))
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("POST", "/api/v1/files/upload", body=sized, headers=headers)
        response = conn.getresponse()
        assert response.status == 413 and b"payload_too_large" in response.read()
        conn.close()

        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("POST", "/api/v1/files/upload", body=b"".join(multipart(int(1.5 * 1024 * 1024))), headers=headers)
        response = conn.getresponse()
        body = response.read()
        assert response.status == 413 and b"exceeds the upload limit of 1 MB" in body, body[:300]
        conn.close()

        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("POST", "/api/v1/files/upload", body=multipart(64 * 1024), headers=headers, encode_chunked=True)
        response = conn.getresponse()
        assert response.status == 411 and b"length_required" in response.read()
        conn.close()
    finally:
        server.stop()
    assert StoredFile.objects.count() == 0


def test_traversal_and_control_characters_are_neutralised(owner_client, media):
    response = upload(owner_client, ("../../etc/pa\x00ss\x1bwd", b"x"), ("..\\..\\win.ini", b"y"), (".hidden", b"z"))
    names = [f["name"] for f in response.json()["files"]]
    assert names == ["passwd", "win.ini", "hidden"]
    for stored in StoredFile.objects.all():
        path = default_storage.path(stored.storage_key)
        assert str(media) in path and ".." not in stored.storage_key


@pytest.mark.parametrize(
    "raw,clean",
    [
        ("report.pdf", "report.pdf"),
        ("/abs/path/x.txt", "x.txt"),
        ("a<b>c:d|e?.txt", "a_b_c_d_e_.txt"),
        ("", "file"),
        ("...", "file"),
        ("\u202eexe.txt", "exe.txt"),
        ("x" * 300 + ".csv", "x" * 196 + ".csv"),
    ],
)
def test_sanitize_filename(raw, clean):
    assert sanitize_filename(raw) == clean


@pytest.mark.parametrize(
    "head,expected",
    [
        (PNG, "image/png"),
        (b"%PDF-1.7\n", "application/pdf"),
        (b'{"a": 1}', "application/json"),
        (b"hello", "text/plain"),
        (b"\x00\x01\x02\x03", "application/octet-stream"),
        (b"", "application/octet-stream"),
    ],
)
def test_sniffing(head, expected):
    assert sniff_content_type(head) == expected


def test_quota_is_enforced_with_usage_in_the_error(member, client_for, settings):
    settings.KAI_STORAGE_QUOTA_MB = 1
    client = client_for(member)
    assert upload(client, ("a.bin", b"\x01" * 700_000)).status_code == 201
    response = upload(client, ("b.bin", b"\x01" * 700_000))
    body = assert_envelope(response, 413)
    assert body["usage"] == {"used_bytes": 700_000, "quota_bytes": 1024 * 1024, "requested_bytes": 700_000}
    assert StoredFile.objects.for_org(member.organization).count() == 1


def test_delete_removes_the_object(owner_client):
    stored = upload(owner_client, ("gone.txt", b"bye")).json()["files"][0]
    key = StoredFile.objects.get(pk=stored["id"]).storage_key
    assert default_storage.exists(key)
    with_captured = owner_client.delete(f"/api/v1/files/{stored['id']}")
    assert with_captured.status_code == 204
    assert not StoredFile.objects.filter(pk=stored["id"]).exists()


def test_another_organization_gets_404(make_member, client_for):
    a, b = make_member(), make_member()
    stored = upload(client_for(a), ("secret.txt", b"s")).json()["files"][0]
    assert_envelope(client_for(b).get(f"/api/v1/files/{stored['id']}/download"), 404)
    assert_envelope(client_for(b).delete(f"/api/v1/files/{stored['id']}"), 404)


def test_every_role_may_upload(make_member, client_for):
    for role in ("owner", "admin", "developer", "user", "agent"):
        assert upload(client_for(make_member(role)), ("r.txt", b"r")).status_code == 201, role


def test_upload_needs_a_file_and_refuses_unknown_fields(owner_client):
    assert_envelope(owner_client.post("/api/v1/files/upload", {}, format="multipart"), 400)
    response = upload(owner_client, ("a.txt", b"a"), colour="red")
    assert assert_envelope(response, 400)["errors"][0]["field"] == "colour"


def test_upload_is_audited(member, client_for):
    from apps.audit.models import AuditEvent

    stored = upload(client_for(member), ("a.txt", b"a")).json()["files"][0]
    row = AuditEvent.objects.get(action="file.create", object_id=stored["id"])
    assert row.after["sha256"] == hashlib.sha256(b"a").hexdigest()


@pytest.mark.django_db(transaction=True)
def test_a_real_server_streams_a_large_upload_instead_of_parsing_it_in_memory(make_member, tmp_path):
    """Twisted used to parse each multipart POST into memory before daphne passed it on (~12x the
    body in RSS). Now the web process grows by at most about one copy of the body (daphne's own
    queue of its chunks) — measured on the server process, with a 24 MB file."""
    import http.client

    import psutil

    from tests.conftest import jwt_for

    member = make_member()
    server = LiveServer(KAI_MEDIA_ROOT=str(tmp_path / "media"), KAI_MAX_UPLOAD_MB="64")
    token = jwt_for(member.user)["access_token"]
    boundary, size = "kaiboundary", 24 * 1024 * 1024
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    block = bytes(range(256)) * 4096  # 1 MiB
    process = psutil.Process(server.process.pid)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)  # warm: first request's imports
        conn.request("GET", "/api/v1/files", headers={"Authorization": f"Bearer {token}"})
        assert conn.getresponse().status == 200
        conn.close()
        before, peak, done = process.memory_info().rss, [0], [False]

        def sample():
            while not done[0]:
                peak[0] = max(peak[0], process.memory_info().rss)
                time.sleep(0.005)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        conn.putrequest("POST", "/api/v1/files/upload")
        for key, value in {
            "Authorization": f"Bearer {token}",
            "Content-Length": str(len(head) + size + len(tail)),
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        }.items():
            conn.putheader(key, value)
        conn.endheaders()
        conn.send(head)
        for _ in range(size // len(block)):
            conn.send(block)
        conn.send(tail)
        response = conn.getresponse()
        body = response.read()
        done[0] = True
        sampler.join(5)
        conn.close()
    finally:
        server.stop()
    assert response.status == 201, body[:300]
    stored = StoredFile.objects.get()
    assert stored.size == size and stored.sha256 == hashlib.sha256(block * (size // len(block))).hexdigest()
    growth = peak[0] - before
    assert growth < 2 * size, f"the web process grew by {growth / 2**20:.0f} MB for a {size / 2**20:.0f} MB upload"


def test_a_blank_field_beside_a_file_is_a_400_not_a_500(owner_client):
    """A form field error is reported beside the file's: the form is copied without deep-copying
    the uploaded file (schemathesis found the 500)."""
    response = upload(owner_client, ("a.png", PNG), agent_id="", execution_id="e3e70682-c209-1cac-a29f-6fbed82c07cd")
    assert_envelope(response, 400, code="GENERAL_001")
    assert not StoredFile.objects.exists()


def test_nul_in_the_metadata_field_is_a_400(owner_client):
    """U+0000 in a multipart form's JSON field reached PostgreSQL as a 500 (schemathesis)."""
    assert_envelope(upload(owner_client, ("a.png", PNG), metadata='{"k": "x\\u0000"}'), 400, code="GENERAL_001")
    assert upload(owner_client, ("a.png", PNG), metadata='{"k": "a \\\\u0000 text"}').status_code == 201
