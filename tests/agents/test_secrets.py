"""Credentials: encrypted at rest (MultiFernet), masked everywhere, clear only for owner/admin
after a fresh step-up (whatever the organization's setting), never in audit rows, events or logs;
rotation re-encrypts under the newest key."""

import json
import logging

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command

from apps.agents import crypto
from apps.agents.models import Credential
from apps.audit.models import AuditEvent
from apps.events.models import Event
from tests.factories import PASSWORD
from tests.helpers import assert_envelope

pytestmark = pytest.mark.django_db
SECRET = "sk-proj-verysecretvalue-abcd"


def _store(client, **extra):
    body = {
        "service_name": "openai",
        "credential_type": "api_key",
        "credential_data": {"value": SECRET},
        "metadata": {"description": "prod key", "auto_rotate": True},
        **extra,
    }
    response = client.post("/api/v1/credentials", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def _step_up(client):
    response = client.post("/api/v1/auth/step-up/password", {"password": PASSWORD}, format="json")
    assert response.status_code == 200, response.content
    return client


def test_value_is_encrypted_masked_and_absent_from_audit_events_and_logs(owner_client, caplog):
    caplog.set_level(logging.DEBUG)
    body = _store(owner_client)
    assert body["masked_value"] == "sk-…abcd" and body["metadata"]["auto_rotate"] is True
    assert body["metadata"]["usage_count"] == 0 and body["encryption_key_id"] == crypto.primary_key_id()
    stored = Credential.objects.get(pk=body["id"])
    assert SECRET not in stored.encrypted_value and crypto.decrypt(stored.encrypted_value).find(SECRET) > 0
    for text in (
        owner_client.get("/api/v1/credentials").content.decode(),
        owner_client.get(f"/api/v1/credentials/{body['id']}").content.decode(),
        json.dumps(list(AuditEvent.objects.values("before", "after")), default=str),
        json.dumps(list(Event.objects.values("data")), default=str),
        caplog.text,
    ):
        assert SECRET not in text


@pytest.mark.parametrize("role, status", [("owner", 200), ("admin", 200), ("developer", 403), ("user", 403)])
def test_clear_value_needs_owner_or_admin(make_member, client_for, role, status):
    owner = make_member()
    body = _store(client_for(owner))
    client = client_for(make_member(role, organization=owner.organization))
    if status == 200:  # the step-up is always needed for the clear value
        assert_envelope(client.get(f"/api/v1/credentials/{body['id']}/value"), 403, "AUTH_002")
        _step_up(client)
    response = client.get(f"/api/v1/credentials/{body['id']}/value")
    assert response.status_code == status
    if status == 200:
        assert response.json()["value"] == SECRET
        assert AuditEvent.objects.filter(action="credential.reveal", object_id=body["id"]).exists()


def test_update_re_encrypts_and_verify(owner_client):
    body = _store(owner_client)
    updated = owner_client.put(
        f"/api/v1/credentials/{body['id']}", {"credential_data": {"value": "new-secret-9999"}}, format="json"
    ).json()
    assert updated["masked_value"] == "new-…9999"
    verify = owner_client.post(
        "/api/v1/credentials/verify", {"credential_id": body["id"], "value": "new-secret-9999"}, format="json"
    ).json()
    assert verify["valid"] is True and verify["matches"] is True and verify["decryptable"] is True
    wrong = owner_client.post(
        "/api/v1/credentials/verify", {"credential_id": body["id"], "value": "nope"}, format="json"
    )
    assert wrong.json()["matches"] is False and wrong.json()["valid"] is False


def test_seed_001_api_keys_share_the_model(owner_client):
    created = owner_client.post(
        "/api/v1/api-keys", {"name": "OpenAI API Key", "service": "openai", "key": SECRET}, format="json"
    )
    assert created.status_code == 201 and created.json()["key_preview"] == "sk-…abcd" and "key" not in created.json()
    key_id = created.json()["id"]
    updated = owner_client.put(
        f"/api/v1/api-keys/{key_id}", {"name": "Updated OpenAI Key", "key": "sk-new-key-5678"}, format="json"
    ).json()
    assert updated["name"] == "Updated OpenAI Key" and updated["key_preview"] == "sk-…5678"
    assert owner_client.get("/api/v1/api-keys").json()["total"] == 1
    assert owner_client.get(f"/api/v1/credentials/{key_id}").json()["masked_value"] == "sk-…5678"
    _store(owner_client, credential_type="password", name="db")
    assert owner_client.get("/api/v1/api-keys").json()["total"] == 1  # passwords are not api-keys


def test_api_key_bodies_say_what_they_need(owner_client):
    """``key`` is required to create (the document says so; PUT/PATCH bodies are partial); the
    service defaults to the name, cut to its 100 characters (a 200-character name was a 500)."""
    assert_envelope(owner_client.post("/api/v1/api-keys", {"name": "no key"}, format="json"), 400)
    long = owner_client.post("/api/v1/api-keys", {"name": "n" * 200, "key": SECRET}, format="json")
    assert long.status_code == 201, long.content
    assert long.json()["service"] == "n" * 100


def test_rotate_secrets_re_encrypts_under_the_newest_key(owner_client, settings):
    old = crypto._keys()[0]
    body = _store(owner_client)
    new = Fernet.generate_key().decode()
    settings.KAI_SECRET_KEYS = [new, old]
    crypto.reset_keys_cache()
    try:
        assert Credential.objects.get(pk=body["id"]).encryption_key_id == crypto.key_id(old)
        call_command("rotate_secrets")
        stored = Credential.objects.get(pk=body["id"])
        assert stored.encryption_key_id == crypto.key_id(new)
        settings.KAI_SECRET_KEYS = [new]  # the old key can go now
        crypto.reset_keys_cache()
        assert json.loads(crypto.decrypt(stored.encrypted_value))["value"] == SECRET
    finally:
        settings.KAI_SECRET_KEYS = []
        crypto.reset_keys_cache()


def test_embedded_key_file_is_created_once_private_and_reused(settings, tmp_path):
    settings.KAI_SECRET_KEYS = []
    settings.KAI_SECRET_KEYS_FILE = tmp_path / "secret.keys"
    crypto.reset_keys_cache()
    try:
        token, _ = crypto.encrypt("hello")
        assert (settings.KAI_SECRET_KEYS_FILE.stat().st_mode & 0o777) == 0o600
        crypto.reset_keys_cache()  # a new process reads the same file
        assert crypto.decrypt(token) == "hello"
    finally:
        crypto.reset_keys_cache()


def test_backup_and_restore(make_member, client_for):
    owner = make_member()
    client = client_for(owner)
    _store(client, name="one")
    assert_envelope(
        client.post("/api/v1/credentials/backup", {"passphrase": "correct horse battery"}, format="json"),
        403,
        "AUTH_002",
    )
    backup = (
        _step_up(client)
        .post("/api/v1/credentials/backup", {"passphrase": "correct horse battery"}, format="json")
        .json()
    )
    assert backup["count"] == 1 and SECRET not in backup["backup"]
    other = client_for(make_member())
    bad = other.post(
        "/api/v1/credentials/restore",
        {"backup": backup["backup"], "kdf": backup["kdf"], "passphrase": "wrong passphrase!"},
        format="json",
    )
    assert_envelope(bad, 400)
    restored = other.post(
        "/api/v1/credentials/restore",
        {"backup": backup["backup"], "kdf": backup["kdf"], "passphrase": "correct horse battery"},
        format="json",
    ).json()
    assert restored == {"created": 1, "updated": 0, "skipped": 0}
    credential_id = other.get("/api/v1/credentials").json()["items"][0]["id"]
    assert _step_up(other).get(f"/api/v1/credentials/{credential_id}/value").json()["value"] == SECRET
    developer = client_for(make_member("developer", organization=owner.organization))
    assert_envelope(
        developer.post("/api/v1/credentials/backup", {"passphrase": "correct horse battery"}, format="json"), 403
    )
