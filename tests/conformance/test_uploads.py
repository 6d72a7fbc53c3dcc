"""Uploads stream to storage through the real server (issue 24 item 5, bench B12): a 50 MB upload
keeps the web process under +20 MB of RSS and arrives byte for byte (kai_platform/server/body.py
hands the body to the application a chunk per ``receive()``)."""

from __future__ import annotations

import hashlib
import json
import os

import httpx
import pytest

from apps.files.models import StoredFile
from bench.b12_upload import RssSampler, post_streamed
from tests.conftest import jwt_for
from tests.helpers import LiveServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

BOUNDARY = "kai-test-boundary-41f0"
BLOCK = os.urandom(1024 * 1024)
SIZE = 50 * BLOCK.__len__() + 12345  # not a multiple of the server's 64 KiB chunks


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        server = LiveServer()
    yield server
    server.stop()


def _multipart(size: int):
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    digest = hashlib.sha256()

    def body():
        yield head
        left = size
        while left:
            block = BLOCK[: min(left, len(BLOCK))]
            digest.update(block)
            left -= len(block)
            yield block
        yield tail

    return body(), len(head) + size + len(tail), digest


def test_a_50_mb_upload_streams_to_storage(server, make_member):
    member = make_member()
    headers = {
        "Authorization": f"Bearer {jwt_for(member.user)['access_token']}",
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
    }
    # a small upload first: what one request loads once (imports, connections) is not the body's cost
    warm, length, _ = _multipart(1000)
    assert post_streamed(server.port, "/api/v1/files/upload", headers, warm, length)[0] == 201
    body, length, digest = _multipart(SIZE)
    sampler = RssSampler(server.process.pid)
    before = sampler.rss()
    with sampler:
        status, payload, _ = post_streamed(server.port, "/api/v1/files/upload", headers, body, length)
    assert status == 201, payload[:500]
    growth = sampler.peak - before
    assert growth < 20 * 1024 * 1024, f"the web process grew by {growth / 2**20:.1f} MB for a 50 MB upload"
    stored = StoredFile.objects.for_org(member.organization).get(pk=json.loads(payload)["files"][0]["id"])
    assert (stored.size, stored.sha256) == (SIZE, digest.hexdigest())


def test_small_and_empty_bodies_and_a_body_the_view_never_reads(server, make_member):
    """Every body size reaches the app whole; a refused request (its body unread) leaves the server well."""
    member = make_member()
    auth = {"Authorization": f"Bearer {jwt_for(member.user)['access_token']}"}
    with httpx.Client(base_url=server.url, headers=auth, timeout=30) as client:
        for size in (0, 1, 64 * 1024, 64 * 1024 + 1, 300 * 1024):
            content = os.urandom(size)
            response = client.post("/api/v1/files/upload", files=[("file", (f"f{size}.bin", content))])
            assert response.status_code == 201, response.text
            assert response.json()["files"][0]["sha256"] == hashlib.sha256(content).hexdigest()
        unauthenticated = httpx.post(
            f"{server.url}/api/v1/files/upload", timeout=30, files=[("file", ("x.bin", os.urandom(2 * 1024 * 1024)))]
        )
        assert unauthenticated.status_code == 401
        assert client.get("/api/v1/files", params={"limit": 1}).status_code == 200
