"""Uploads beyond tests/files (traversal, oversize, sniffing live there): a zip bomb is stored as
the bytes it is, never expanded, and is labelled by its content, not by the name the client gave.
Secrets: a credential's value never appears in error bodies, audit rows, logs or the OpenAPI
document's examples, and key rotation re-encrypts every stored secret."""

from __future__ import annotations

import io
import json
import logging
import os
import zipfile

import pytest
from django.core.files.storage import default_storage

from apps.files.models import StoredFile

pytestmark = pytest.mark.django_db

BOMB_PAYLOAD = 200 * 1024 * 1024  # 200 MB of zeros in each member


def _zip_bomb() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name in ("a.bin", "b.bin"):
            with archive.open(name, "w", force_zip64=True) as member:
                chunk = b"\0" * (1024 * 1024)
                for _ in range(BOMB_PAYLOAD // len(chunk)):
                    member.write(chunk)
    return buffer.getvalue()


@pytest.fixture
def media(tmp_path, settings):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}},
    }
    return tmp_path


def test_a_zip_bomb_is_stored_as_is_never_expanded(owner_client, media):
    bomb = _zip_bomb()
    assert len(bomb) < 2 * 1024 * 1024  # ~400 MB inflated from under 2 MB
    upload = io.BytesIO(bomb)
    upload.name = "holiday-photo.png"  # the client's name and type claim an image
    response = owner_client.post("/api/v1/files/upload", {"file": [upload]}, format="multipart")
    assert response.status_code == 201, response.content
    [meta] = response.json()["files"]
    assert meta["size"] == len(bomb)
    assert meta["content_type"] == "application/zip"  # sniffed from the bytes
    stored = StoredFile.objects.get(pk=meta["id"])
    assert default_storage.size(stored.storage_key) == len(bomb)
    on_disk = sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(media) for f in files)
    assert on_disk == len(bomb), "something was unpacked next to the upload"
    download = owner_client.get(f"/api/v1/files/{meta['id']}/download")
    assert download["Content-Type"] == "application/zip"
    assert download["Content-Disposition"].startswith("attachment;")
    assert b"".join(download.streaming_content) == bomb


def _zip(*names: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in names:
            archive.writestr(name, "x" * 100)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "names,expected",
    [
        (("a.bin",), "application/zip"),
        (
            ("[Content_Types].xml", "_rels/.rels", "word/document.xml"),
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
        (
            ("[Content_Types].xml", "_rels/.rels", "xl/workbook.xml"),
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ),
    ],
)
def test_zip_containers_are_told_apart_by_their_members(names, expected):
    from apps.files.validation import sniff_content_type

    assert sniff_content_type(_zip(*names)[:8192]) == expected


# --- secrets -----------------------------------------------------------------------------------

SECRET = "sk-live-SUPERSECRET-4f9c2e7a1b"


def test_a_secret_never_reaches_error_bodies_audit_rows_or_logs(owner_client, member, caplog):
    from apps.audit.models import AuditEvent

    caplog.set_level(logging.DEBUG)

    def body(**extra):
        return {"service_name": "openai", "credential_type": "api_key", "credential_data": {"value": SECRET}, **extra}

    created = owner_client.post("/api/v1/credentials", body(), format="json")
    assert created.status_code == 201, created.content
    credential_id = created.json()["id"]
    error_bodies = [
        # invalid requests that carry the secret: the envelope names the problem, never echoes the value
        owner_client.post("/api/v1/credentials", body(credential_type="nonsense"), format="json"),
        owner_client.post("/api/v1/credentials", body(service_name="x" * 500), format="json"),
        owner_client.post("/api/v1/credentials", body(unknown=SECRET), format="json"),
        owner_client.post(
            "/api/v1/credentials", body(credential_data={"value": SECRET, "extra": SECRET}), format="json"
        ),
        owner_client.patch(f"/api/v1/credentials/{credential_id}", body(bogus=1), format="json"),
        owner_client.post(
            "/api/v1/providers",
            {"name": "p", "provider": "openai", "api_key": SECRET, "base_url": "http://169.254.169.254/v1"},
            format="json",
        ),
        owner_client.post(
            "/api/v1/credentials",
            f'{{"service_name": "z", "credential_data": {{"value": "{SECRET}"'.encode(),
            content_type="application/json",
        ),
    ]
    for response in error_bodies:
        assert 400 <= response.status_code < 500, (response.status_code, response.content[:200])
        assert SECRET not in response.content.decode(), response.content
    listed = owner_client.get("/api/v1/credentials").content.decode()
    assert SECRET not in listed
    for row in AuditEvent.objects.filter(organization=member.organization).values("before", "after"):
        assert SECRET not in json.dumps(row, default=str)
    assert SECRET not in caplog.text


def test_the_openapi_document_carries_no_secret_looking_examples(api_client):
    import re

    document = api_client.get("/api-openapi.json").content.decode()
    patterns = [
        r"sk-[A-Za-z0-9]{16,}",
        r"kai_[A-Za-z0-9_-]{20,}",
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
        r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.",
        r"AKIA[0-9A-Z]{16}",
        r"xox[abp]-[0-9A-Za-z-]{10,}",
    ]
    found = [m.group(0) for p in patterns for m in re.finditer(p, document)]
    assert not found, found


def test_rotation_re_encrypts_every_stored_secret_of_every_organization(make_member, settings):
    """Credentials, outbound webhook secrets and workflow webhook secrets: after ``rotate_secrets``
    the old key can be retired and every one of them still opens."""
    from cryptography.fernet import Fernet
    from django.core.management import call_command

    from apps.agents import crypto
    from apps.agents.models import Credential
    from apps.agents.services import credential_create
    from apps.webhooks.services import webhook_create, webhook_secret
    from apps.workflows.models import Workflow
    from tests.factories import make_tenant_object

    settings.KAI_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    old = crypto._keys()[0]
    values, hooks, flows = {}, {}, []
    for _ in range(3):
        member = make_member()
        for i in range(4):
            value = f"value-{member.organization.slug}-{i}"
            credential = credential_create(
                organization=member.organization, actor=member.user, name=f"k{i}", service_name="openai", value=value
            )
            values[credential.pk] = value
        webhook, secret = webhook_create(
            organization=member.organization,
            actor=member.user,
            data={"url": "http://127.0.0.1:9/hook", "events": ["execution.failed"]},
        )
        hooks[webhook.pk] = secret
        flows.append(make_tenant_object(Workflow, member.organization, member.user).pk)
    flow_secrets = {pk: crypto.decrypt(Workflow.objects.get(pk=pk).webhook_secret) for pk in flows}
    new = Fernet.generate_key().decode()
    settings.KAI_SECRET_KEYS = [new, old]
    crypto.reset_keys_cache()
    try:
        call_command("rotate_secrets", verbosity=0)
        settings.KAI_SECRET_KEYS = [new]  # the old key is retired: everything must read with the new one alone
        crypto.reset_keys_cache()
        rotated = Credential.objects.filter(pk__in=values)
        assert rotated.count() == len(values) == 12
        for credential in rotated:
            assert credential.encryption_key_id == crypto.key_id(new)
            assert json.loads(crypto.decrypt(credential.encrypted_value))["value"] == values[credential.pk]
        from apps.webhooks.models import Webhook

        for webhook in Webhook.objects.filter(pk__in=hooks):
            assert webhook.secret_key_id == crypto.key_id(new) and webhook_secret(webhook) == hooks[webhook.pk]
        for workflow in Workflow.objects.filter(pk__in=flows):
            assert crypto.decrypt(workflow.webhook_secret) == flow_secrets[workflow.pk]
        assert len(hooks) == len(flows) == 3
    finally:
        settings.KAI_SECRET_KEYS = []
        crypto.reset_keys_cache()
