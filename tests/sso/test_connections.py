"""SSO connections API (owner only, secret encrypted and write-only), domain ownership by DNS TXT
record (an injected resolver) or staff, and the sign-in policy of enforced connections."""

from __future__ import annotations

import pytest

from apps.accounts.models import User
from apps.audit.models import AuditEvent
from apps.sso import selectors
from apps.sso.models import SSOConnection
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

BODY = {
    "protocol": "oidc",
    "issuer_url": "https://login.acme.test/realms/acme",
    "client_id": "kai",
    "client_secret": "s3cret-value-1234",
    "allowed_domains": ["Acme.test", "@corp.acme.test"],
    "default_role": "user",
    "role_mapping": {"admins": "admin"},
}


def test_owner_manages_the_connection_secret_stays_encrypted(owner_client, member):
    created = owner_client.post("/api/v1/sso/connections", BODY, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert "client_secret" not in body and body["client_secret_set"] is True
    assert body["allowed_domains"] == ["acme.test", "corp.acme.test"]
    assert body["login_url"] == f"/api/v1/auth/sso/{member.organization.slug}/login"
    stored = SSOConnection.objects.get(pk=body["id"])
    assert "s3cret" not in stored.client_secret_encrypted and stored.secret_key_id
    from apps.sso.services import client_secret

    assert client_secret(stored) == "s3cret-value-1234"
    assert owner_client.post("/api/v1/sso/connections", BODY, format="json").status_code == 409
    listed = owner_client.get("/api/v1/sso/connections").json()
    assert [c["id"] for c in listed["items"]] == [body["id"]]

    updated = owner_client.put(
        f"/api/v1/sso/connections/{body['id']}", {"enforced": True, "name": "Keycloak"}, format="json"
    )
    assert updated.status_code == 200 and updated.json()["enforced"] is True
    row = AuditEvent.objects.filter(action="sso.connection.update").first()
    assert "s3cret" not in str(row.before) + str(row.after)
    assert owner_client.delete(f"/api/v1/sso/connections/{body['id']}").status_code == 204
    assert not SSOConnection.objects.exists()


def test_only_owners_and_only_their_organization(owner_client, member, make_member, client_for):
    connection_id = owner_client.post("/api/v1/sso/connections", BODY, format="json").json()["id"]
    admin = make_member("admin", organization=member.organization)
    assert client_for(admin).get("/api/v1/sso/connections").status_code == 403
    stranger = make_member("owner")
    assert client_for(stranger).get(f"/api/v1/sso/connections/{connection_id}").status_code == 404
    assert client_for(stranger).delete(f"/api/v1/sso/connections/{connection_id}").status_code == 404


def test_bad_bodies_are_refused_with_field_errors(owner_client):
    missing = owner_client.post("/api/v1/sso/connections", {"protocol": "oidc"}, format="json")
    assert missing.status_code == 400
    fields = {e["field"] for e in missing.json()["errors"]}
    assert {"issuer_url", "client_id", "client_secret"} <= fields
    saml = owner_client.post("/api/v1/sso/connections", {"protocol": "saml"}, format="json")
    assert saml.status_code == 400 and "idp_metadata_xml" in saml.content.decode()
    owner_map = owner_client.post("/api/v1/sso/connections", {**BODY, "role_mapping": {"x": "owner"}}, format="json")
    assert owner_map.status_code == 400
    enforced = owner_client.post(
        "/api/v1/sso/connections", {**BODY, "allowed_domains": [], "enforced": True}, format="json"
    )
    assert enforced.status_code == 400
    assert not SSOConnection.objects.exists()


class FakeAnswer:
    def __init__(self, value: str):
        self.strings = [value.encode()]


class FakeResolver:
    def __init__(self, records: dict):
        self.records, self.asked = records, []

    def resolve(self, name, rdtype, lifetime=None):
        import dns.resolver

        self.asked.append((name, rdtype))
        if name not in self.records:
            raise dns.resolver.NXDOMAIN()
        return [FakeAnswer(v) for v in self.records[name]]


def test_domains_are_proved_by_dns_txt_record(owner_client, monkeypatch):
    body = owner_client.post("/api/v1/sso/connections", BODY, format="json").json()
    record = body["dns_txt_record"]
    assert record["name"] == "_kai-verification.<domain>" and record["value"].startswith("kai-verification=")
    resolver = FakeResolver(
        {
            "_kai-verification.acme.test": ["v=spf1 -all", record["value"]],
            "_kai-verification.corp.acme.test": ["kai-verification=someone-else"],
        }
    )
    monkeypatch.setattr(selectors, "_resolver", resolver)
    verified = owner_client.post(f"/api/v1/sso/connections/{body['id']}/verify-domains").json()
    assert verified["verified_domains"] == ["acme.test"] and verified["domains_verified"] is False
    assert ("_kai-verification.acme.test", "TXT") in resolver.asked
    # changing the list drops proofs of domains no longer on it
    changed = owner_client.put(
        f"/api/v1/sso/connections/{body['id']}", {"allowed_domains": ["acme.test"]}, format="json"
    ).json()
    assert changed["verified_domains"] == ["acme.test"] and changed["domains_verified"] is True
    assert AuditEvent.objects.filter(action="sso.domain.verify").exists()


def test_enforced_connection_refuses_password_sign_in_owners_break_glass(owner_client, member, make_member, api_client):
    from apps.stepup import services as stepup

    owner_client.post("/api/v1/sso/connections", {**BODY, "enforced": True}, format="json")
    developer = make_member("developer", organization=member.organization)
    developer.user.set_password("dev-pass-12345")
    developer.user.save()
    refused = api_client.post(
        "/api/v1/auth/login", {"email": developer.user.email, "password": "dev-pass-12345"}, format="json"
    )
    assert refused.status_code == 403 and refused.json()["sso_login_url"].endswith("/login")

    member.user.set_password("owner-pass-12345")
    member.user.save()
    login = {"email": member.user.email, "password": "owner-pass-12345"}
    assert api_client.post("/api/v1/auth/login", login, format="json").status_code == 403
    codes = stepup._backup_codes_replace(member.user)
    wrong = api_client.post("/api/v1/auth/login", {**login, "step_up_code": "nope-nope"}, format="json")
    assert wrong.status_code == 403
    ok = api_client.post("/api/v1/auth/login", {**login, "step_up_code": codes[0]}, format="json")
    assert ok.status_code == 200 and "access_token" in ok.json()
    assert api_client.post("/api/v1/auth/login", {**login, "step_up_code": codes[0]}, format="json").status_code == 403
    assert AuditEvent.objects.filter(action="sso.break_glass_login", organization=member.organization).exists()

    outsider = UserFactory()
    outsider.set_password("outsider-pass-123")
    outsider.save()
    assert (
        api_client.post(
            "/api/v1/auth/login", {"email": outsider.email, "password": "outsider-pass-123"}, format="json"
        ).status_code
        == 200
    )
    assert User.objects.filter(email=developer.user.email, is_active=True).exists()


def test_staff_confirm_domains_in_the_admin(member, client):
    from apps.sso.services import connection_create

    connection = connection_create(organization=member.organization, actor=member.user, data=BODY)
    staff = User.objects.create_user(
        email="ops@example.com", password="ops-pass-12345", is_staff=True, is_superuser=True
    )
    client.force_login(staff)
    response = client.post(
        "/admin/sso/ssoconnection/", {"action": "confirm_domains", "_selected_action": [str(connection.pk)]}
    )
    assert response.status_code == 302
    connection.refresh_from_db()
    assert connection.domains_confirmed_by_staff and connection.domains_verified


def test_rotate_secrets_re_encrypts_sso_client_secrets(owner_client, settings):
    from cryptography.fernet import Fernet
    from django.core.management import call_command

    from apps.agents import crypto
    from apps.sso.services import client_secret

    old = crypto._keys()[0]
    body = owner_client.post("/api/v1/sso/connections", BODY, format="json").json()
    new = Fernet.generate_key().decode()
    settings.KAI_SECRET_KEYS = [new, old]
    crypto.reset_keys_cache()
    try:
        call_command("rotate_secrets")
        stored = SSOConnection.objects.get(pk=body["id"])
        assert stored.secret_key_id == crypto.key_id(new)
        settings.KAI_SECRET_KEYS = [new]
        crypto.reset_keys_cache()
        assert client_secret(stored) == "s3cret-value-1234"
    finally:
        settings.KAI_SECRET_KEYS = []
        crypto.reset_keys_cache()
