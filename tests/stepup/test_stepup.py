"""WebAuthn step-up with a software authenticator (real attestation/assertion, real verifier),
password re-check grants, and the guard on seed 002's sensitive operations."""

from __future__ import annotations

import pytest
from django.conf import settings

from apps.accounts.services import organization_settings_update
from apps.agents.services import agent_create, credential_create
from apps.audit.models import AuditEvent
from apps.stepup.models import WebAuthnCredential
from tests.factories import PASSWORD
from tests.helpers import assert_envelope
from tests.stepup.soft_authenticator import SoftAuthenticator

pytestmark = pytest.mark.django_db

B = "/api/v1"


def _authenticator() -> SoftAuthenticator:
    return SoftAuthenticator(settings.KAI_WEBAUTHN_RP_ID, settings.KAI_WEBAUTHN_ORIGINS[0])


def _register(client, authenticator, name="key one"):
    options = client.post(f"{B}/auth/biometric/setup", {"name": name}, format="json")
    assert options.status_code == 200, options.content
    public_key = options.json()["public_key"]
    assert public_key["rp"]["id"] == settings.KAI_WEBAUTHN_RP_ID
    return client.post(
        f"{B}/auth/biometric/setup", {"name": name, "credential": authenticator.create(public_key)}, format="json"
    )


def _assert(client, authenticator, **kwargs):
    options = client.post(f"{B}/auth/biometric/verify", {}, format="json")
    assert options.status_code == 200, options.content
    return client.post(
        f"{B}/auth/biometric/verify",
        {"credential": authenticator.get(options.json()["public_key"], **kwargs)},
        format="json",
    )


def _require_step_up(member, **extra):
    organization_settings_update(
        organization=member.organization, actor=member.user, changes={"require_step_up": True, **extra}
    )
    member.organization.refresh_from_db()


def test_register_several_authenticators_and_step_up_with_each(member, client_for):
    client = client_for(member)
    first, second = _authenticator(), _authenticator()
    created = _register(client, first, "key one")
    assert created.status_code == 201, created.content
    assert created.json()["success"] is True and created.json()["name"] == "key one"
    assert _register(client, second, "key two").status_code == 201
    listed = client.get(f"{B}/auth/biometric/credentials").json()["items"]
    assert [a["name"] for a in listed] == ["key one", "key two"]
    member.user.refresh_from_db()
    assert member.user.preferences["biometric_enabled"] is True

    for authenticator in (first, second):
        granted = _assert(client, authenticator)
        assert granted.status_code == 200, granted.content
        assert granted.json()["step_up"]["method"] == "webauthn"
    stored = WebAuthnCredential.objects.get(credential_id=listed[1]["credential_id"])
    assert stored.sign_count == 1 and stored.last_used_at is not None
    actions = set(AuditEvent.objects.filter(organization=member.organization).values_list("action", flat=True))
    assert {"stepup.authenticator.create", "stepup.grant.webauthn"} <= actions


def test_forged_or_replayed_ceremonies_are_refused(member, client_for):
    client = client_for(member)
    authenticator = _authenticator()
    # registration signed for another origin
    options = client.post(f"{B}/auth/biometric/setup", {}, format="json").json()["public_key"]
    bad = client.post(
        f"{B}/auth/biometric/setup",
        {"credential": authenticator.create(options, origin="https://evil.example")},
        format="json",
    )
    assert_envelope(bad, 403, "AUTH_002")
    # the challenge was consumed: the same answer cannot be sent again
    again = client.post(f"{B}/auth/biometric/setup", {"credential": authenticator.create(options)}, format="json")
    assert_envelope(again, 403, "AUTH_002")
    assert _register(client, authenticator).status_code == 201
    # an assertion by a key that is not the registered one (same credential id, other private key)
    impostor = _authenticator()
    impostor.credential_id = authenticator.credential_id
    assert_envelope(_assert(client, impostor), 403, "AUTH_002")
    # a cloned authenticator: the signature counter does not advance
    assert _assert(client, authenticator, sign_count=5).status_code == 200
    assert_envelope(_assert(client, authenticator, sign_count=5), 403, "AUTH_002")
    # another user's session cannot use this authenticator
    assert_envelope(
        client.post(
            f"{B}/auth/biometric/verify",
            {"credential": authenticator.get({"rpId": settings.KAI_WEBAUTHN_RP_ID, "challenge": "AAAA"})},
            format="json",
        ),
        403,
        "AUTH_002",
    )


def test_sensitive_operations_need_a_fresh_grant_when_the_organization_requires_it(member, client_for):
    client = client_for(member)
    agent = agent_create(organization=member.organization, actor=member.user, data={"name": "Scout"})
    credential = credential_create(
        organization=member.organization, actor=member.user, name="gh", service_name="github", value="ghp_secret_value"
    )
    # off by default: no grant needed
    assert client.patch(f"{B}/agents/{agent.pk}", {"goal": "find"}, format="json").status_code == 200

    _require_step_up(member)
    body = assert_envelope(client.patch(f"{B}/agents/{agent.pk}", {"goal": "x"}, format="json"), 403, "AUTH_002")
    assert body["type"] == "step_up_required" and "password" in body["step_up"]["methods"]
    assert_envelope(client.get(f"{B}/credentials/{credential.pk}/value"), 403, "AUTH_002")
    assert_envelope(
        client.post(
            f"{B}/credentials",
            {"service_name": "slack", "credential_type": "api_key", "credential_data": {"value": "xoxb"}},
            format="json",
        ),
        403,
        "AUTH_002",
    )
    assert_envelope(client.delete(f"{B}/credentials/{credential.pk}"), 403, "AUTH_002")
    # reading stays open
    assert client.get(f"{B}/agents/{agent.pk}").status_code == 200
    assert client.get(f"{B}/credentials").status_code == 200

    # no authenticator yet: a password re-check grant opens them
    assert_envelope(client.post(f"{B}/auth/step-up/password", {"password": "wrong"}, format="json"), 403, "AUTH_004")
    granted = client.post(f"{B}/auth/step-up/password", {"password": PASSWORD}, format="json")
    assert granted.status_code == 200 and granted.json()["step_up"]["method"] == "password"
    assert client.patch(f"{B}/agents/{agent.pk}", {"goal": "y"}, format="json").status_code == 200
    assert client.get(f"{B}/credentials/{credential.pk}/value").json()["value"] == "ghp_secret_value"

    # the grant is bound to the session: another session of the same user has none
    other_session = client_for(member)
    assert_envelope(other_session.patch(f"{B}/agents/{agent.pk}", {"goal": "z"}, format="json"), 403, "AUTH_002")

    # once the user has an authenticator, a password grant no longer counts: WebAuthn (or one of the
    # backup codes its registration issued) only
    authenticator = _authenticator()
    assert _register(client, authenticator).status_code == 201
    body = assert_envelope(client.patch(f"{B}/agents/{agent.pk}", {"goal": "w"}, format="json"), 403, "AUTH_002")
    assert body["step_up"]["methods"] == ["webauthn", "backup_code"]
    assert _assert(client, authenticator).status_code == 200
    assert client.delete(f"{B}/credentials/{credential.pk}").status_code == 204

    # dropping the grant closes them again; turning step-up off is itself guarded
    assert client.delete(f"{B}/auth/step-up").status_code == 204
    state = client.get(f"{B}/auth/step-up").json()
    assert state["required"] is True and state["granted"] is False
    assert_envelope(
        client.post(f"{B}/config/system", {"settings": {"require_step_up": False}}, format="json"), 403, "AUTH_002"
    )


def test_password_fallback_can_be_turned_off_and_grants_expire(member, client_for, settings):
    settings.KAI_STEP_UP_TTL_SECONDS = 1
    client = client_for(member)
    agent = agent_create(organization=member.organization, actor=member.user, data={"name": "Scout"})
    _require_step_up(member, step_up_password_fallback=False)
    assert client.post(f"{B}/auth/step-up/password", {"password": PASSWORD}, format="json").status_code == 200
    body = assert_envelope(client.patch(f"{B}/agents/{agent.pk}", {"goal": "x"}, format="json"), 403, "AUTH_002")
    assert body["step_up"]["methods"] == ["webauthn"]

    authenticator = _authenticator()
    assert _register(client, authenticator).status_code == 201
    assert _assert(client, authenticator).json()["step_up"]["expires_in"] == 1
    assert client.patch(f"{B}/agents/{agent.pk}", {"goal": "y"}, format="json").status_code == 200
    import time

    time.sleep(1.2)
    assert_envelope(client.patch(f"{B}/agents/{agent.pk}", {"goal": "z"}, format="json"), 403, "AUTH_002")


def test_wrong_passwords_are_limited(member, client_for):
    client = client_for(member)
    for _ in range(5):
        assert_envelope(client.post(f"{B}/auth/step-up/password", {"password": "nope"}, format="json"), 403)
    assert_envelope(
        client.post(f"{B}/auth/step-up/password", {"password": PASSWORD}, format="json"), 429, "GENERAL_002"
    )


def test_authenticators_are_the_users_own(make_member, client_for):
    ann, bob = make_member("owner"), make_member("developer")
    ann_client, bob_client = client_for(ann), client_for(bob)
    assert _register(ann_client, _authenticator()).status_code == 201
    ann_key = ann_client.get(f"{B}/auth/biometric/credentials").json()["items"][0]
    assert bob_client.get(f"{B}/auth/biometric/credentials").json()["items"] == []
    assert_envelope(bob_client.delete(f"{B}/auth/biometric/credentials/{ann_key['id']}"), 404)
    # bob has no authenticator: verify options say how to proceed instead
    assert_envelope(
        bob_client.post(f"{B}/auth/biometric/verify", {}, format="json"), 409, "GENERAL_001"
    )  # the account has none (its state)
    assert ann_client.delete(f"{B}/auth/biometric/credentials/{ann_key['id']}").status_code == 204
    assert not WebAuthnCredential.objects.filter(user=ann.user).exists()


def test_seed_inline_biometric_verification_on_credential_store(member, client_for):
    client = client_for(member)
    authenticator = _authenticator()
    assert _register(client, authenticator).status_code == 201
    _require_step_up(member)
    body = {"service_name": "slack", "credential_type": "api_key", "credential_data": {"value": "xoxb-1"}}
    assert_envelope(client.post(f"{B}/credentials", body, format="json"), 403, "AUTH_002")
    options = client.post(f"{B}/auth/biometric/verify", {}, format="json").json()["public_key"]
    assertion = authenticator.get(options)
    seed_form = {
        "credential_id": assertion["id"],
        "challenge_response": assertion["response"]["signature"],
        "authenticator_data": assertion["response"]["authenticatorData"],
        "client_data_json": assertion["response"]["clientDataJSON"],
    }
    stored = client.post(f"{B}/credentials", {**body, "biometric_verification": seed_form}, format="json")
    assert stored.status_code == 201, stored.content
    # the same assertion cannot be replayed (its challenge was used)
    again = client_for(member).post(
        f"{B}/credentials", {**body, "service_name": "jira", "biometric_verification": seed_form}, format="json"
    )
    assert_envelope(again, 403, "AUTH_002")


def test_stored_secrets_need_a_fresh_grant_whatever_the_organization_setting(member, client_for):
    client = client_for(member)
    credential = credential_create(
        organization=member.organization, actor=member.user, name="gh", service_name="github", value="ghp_secret_value"
    )
    assert not (member.organization.settings or {}).get("require_step_up")
    body = assert_envelope(client.get(f"{B}/credentials/{credential.pk}/value"), 403, "AUTH_002")
    assert body["step_up"] == {
        "methods": ["webauthn", "password"],
        "verify": ["auth/biometric/verify", "auth/step-up/password"],
    }
    assert "ghp_secret_value" not in str(body)
    assert_envelope(
        client.post(f"{B}/credentials/backup", {"passphrase": "correct horse battery"}, format="json"), 403, "AUTH_002"
    )
    # other credential operations stay open where the organization does not ask for step-up
    assert client.get(f"{B}/credentials/{credential.pk}").json()["masked_value"].endswith("alue")
    assert client.post(f"{B}/auth/step-up/password", {"password": PASSWORD}, format="json").status_code == 200
    assert client.get(f"{B}/credentials/{credential.pk}/value").json()["value"] == "ghp_secret_value"
    # with an authenticator, the password grant no longer opens the secret
    authenticator = _authenticator()
    assert _register(client, authenticator).status_code == 201
    assert client.delete(f"{B}/auth/step-up").status_code == 204
    assert client.post(f"{B}/auth/step-up/password", {"password": PASSWORD}, format="json").status_code == 200
    assert_envelope(client.get(f"{B}/credentials/{credential.pk}/value"), 403, "AUTH_002")
    assert _assert(client, authenticator).status_code == 200
    assert client.get(f"{B}/credentials/{credential.pk}/value").json()["value"] == "ghp_secret_value"
