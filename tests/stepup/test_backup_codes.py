"""Backup codes (seed 002 ``BiometricSetupResponse.backup_codes``): ten single-use recovery codes
issued with a user's first authenticator, spent on ``auth/biometric/verify`` for the same step-up
grant an assertion earns, regenerated behind a fresh grant. Real Postgres/Redis, real WebAuthn
verification (software authenticator)."""

from __future__ import annotations

import json
import logging
import re
import threading

import pytest
from django.db import connections
from rest_framework.test import APIClient

from apps.agents.services import agent_create
from apps.audit.models import AuditEvent
from apps.stepup.models import BackupCode, WebAuthnCredential
from apps.stepup.services import backup_code_digest
from tests.factories import PASSWORD
from tests.helpers import assert_envelope
from tests.stepup.test_stepup import _assert, _authenticator, _register, _require_step_up

pytestmark = pytest.mark.django_db

B = "/api/v1"
CODE_RE = re.compile(r"^[0-9a-hjkmnp-tv-z]{5}-[0-9a-hjkmnp-tv-z]{5}$")


def _use(client, code):
    return client.post(f"{B}/auth/biometric/verify", {"backup_code": code}, format="json")


def test_the_first_authenticator_comes_with_ten_codes_and_a_second_with_none(member, client_for):
    client = client_for(member)
    assert client.get(f"{B}/auth/biometric/backup-codes").json() == {"remaining": 0, "total": 0, "generated_at": None}
    first = _register(client, _authenticator(), "key one")
    assert first.status_code == 201, first.content
    body = first.json()
    assert body["success"] is True and body["name"] == "key one"
    assert body["credential_id"] == WebAuthnCredential.objects.get(user=member.user).credential_id
    codes = body["backup_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10 and all(CODE_RE.match(c) for c in codes), codes
    # only keyed digests are stored
    digests = set(BackupCode.objects.filter(user=member.user).values_list("digest", flat=True))
    assert digests == {backup_code_digest(member.user.pk, c) for c in codes}
    assert not any(c in d or c.replace("-", "") in d for c in codes for d in digests)

    second = _register(client, _authenticator(), "key two")
    assert second.status_code == 201 and second.json()["backup_codes"] == []
    assert set(BackupCode.objects.filter(user=member.user).values_list("digest", flat=True)) == digests
    state = client.get(f"{B}/auth/biometric/backup-codes").json()
    assert state["remaining"] == 10 and state["total"] == 10 and state["generated_at"]


def test_a_code_earns_the_grant_once(member, client_for):
    client = client_for(member)
    agent = agent_create(organization=member.organization, actor=member.user, data={"name": "Scout"})
    codes = _register(client, _authenticator()).json()["backup_codes"]
    _require_step_up(member)
    body = assert_envelope(client.patch(f"{B}/agents/{agent.pk}", {"goal": "x"}, format="json"), 403, "AUTH_002")
    assert body["step_up"] == {"methods": ["webauthn", "backup_code"], "verify": ["auth/biometric/verify"]}

    # typed sloppily: case, spaces and a missing dash do not matter
    granted = _use(client, f"  {codes[0].upper().replace('-', ' ')} ")
    assert granted.status_code == 200, granted.content
    assert granted.json()["success"] is True and granted.json()["step_up"]["method"] == "backup_code"
    assert client.patch(f"{B}/agents/{agent.pk}", {"goal": "y"}, format="json").status_code == 200
    state = client.get(f"{B}/auth/step-up").json()
    assert state["granted"] is True and state["grant"]["method"] == "backup_code"
    assert client.get(f"{B}/auth/biometric/backup-codes").json()["remaining"] == 9

    # the same code again — in this session or another — is refused like a failed assertion
    other = client_for(member)
    for c in (client, other):
        refused = assert_envelope(_use(c, codes[0]), 403, "AUTH_002")
        assert refused["type"] == "step_up_failed" and codes[0] not in json.dumps(refused)
    assert_envelope(other.patch(f"{B}/agents/{agent.pk}", {"goal": "z"}, format="json"), 403, "AUTH_002")
    assert_envelope(_use(other, "zzzzz-zzzzz"), 403, "AUTH_002")
    # another code works in the other session
    assert _use(other, codes[1]).status_code == 200
    assert other.patch(f"{B}/agents/{agent.pk}", {"goal": "z"}, format="json").status_code == 200
    row = AuditEvent.objects.filter(organization=member.organization, action="stepup.grant.backup_code").latest("id")
    assert row.after["backup_codes_remaining"] == 8
    # a code and an assertion in one call is ambiguous
    assert_envelope(
        client.post(f"{B}/auth/biometric/verify", {"backup_code": codes[2], "credential": {"id": "x"}}, format="json"),
        400,
        "GENERAL_001",
    )


def test_codes_are_the_users_own(make_member, client_for):
    ann, bob = make_member("owner"), make_member("owner")
    ann_codes = _register(client_for(ann), _authenticator()).json()["backup_codes"]
    bob_client = client_for(bob)
    assert _register(bob_client, _authenticator()).status_code == 201
    assert_envelope(_use(bob_client, ann_codes[0]), 403, "AUTH_002")
    assert BackupCode.objects.filter(used_at__isnull=False).count() == 0


def test_wrong_codes_are_limited(member, client_for):
    client = client_for(member)
    codes = _register(client, _authenticator()).json()["backup_codes"]
    for _ in range(5):
        assert_envelope(_use(client, "00000-00000"), 403, "AUTH_002")
    assert_envelope(_use(client, codes[0]), 429, "GENERAL_002")
    assert BackupCode.objects.filter(user=member.user, used_at__isnull=True).count() == 10


@pytest.mark.django_db(transaction=True)
def test_ten_concurrent_uses_of_one_code_succeed_exactly_once(make_member, client_for):
    member = make_member("owner")
    client = client_for(member)
    code = _register(client, _authenticator()).json()["backup_codes"][0]
    token = client._credentials["HTTP_AUTHORIZATION"]
    barrier = threading.Barrier(10)
    statuses = []

    def use():
        try:
            other = APIClient()
            other.credentials(HTTP_AUTHORIZATION=token)
            barrier.wait()
            statuses.append(_use(other, code).status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=use) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses.count(200) == 1, statuses
    assert set(statuses) <= {200, 403, 429} and len(statuses) == 10, statuses
    assert BackupCode.objects.filter(user=member.user, used_at__isnull=False).count() == 1
    assert AuditEvent.objects.filter(organization=member.organization, action="stepup.grant.backup_code").count() == 1


def test_regenerating_needs_a_fresh_grant_and_replaces_every_code(member, client_for):
    client = client_for(member)
    authenticator = _authenticator()
    old = _register(client, authenticator).json()["backup_codes"]
    assert _use(client, old[0]).status_code == 200
    assert client.delete(f"{B}/auth/step-up").status_code == 204
    # the organization does not require step-up, regenerating does anyway
    body = assert_envelope(client.post(f"{B}/auth/biometric/backup-codes", {}, format="json"), 403, "AUTH_002")
    assert body["step_up"]["methods"] == ["webauthn", "backup_code"]
    # a password grant does not count once an authenticator exists
    assert client.post(f"{B}/auth/step-up/password", {"password": PASSWORD}, format="json").status_code == 200
    assert_envelope(client.post(f"{B}/auth/biometric/backup-codes", {}, format="json"), 403, "AUTH_002")

    assert _assert(client, authenticator).status_code == 200
    fresh = client.post(f"{B}/auth/biometric/backup-codes", {}, format="json")
    assert fresh.status_code == 200, fresh.content
    new = fresh.json()["backup_codes"]
    assert fresh.json()["remaining"] == 10 and fresh.json()["total"] == 10
    assert len(new) == 10 and not set(new) & set(old)
    row = AuditEvent.objects.get(organization=member.organization, action="stepup.backup_codes.regenerate")
    assert row.before["backup_codes_unused"] == 9 and row.after["backup_codes_unused"] == 10
    assert row.after["backup_codes_generated_at"] > row.before["backup_codes_generated_at"]
    # every old code is dead, the new ones work
    other = client_for(member)
    assert_envelope(_use(other, old[1]), 403, "AUTH_002")
    assert _use(other, new[0]).status_code == 200
    assert other.get(f"{B}/auth/biometric/backup-codes").json()["remaining"] == 9
    # a backup-code grant may regenerate too (the lost-authenticator path)
    assert other.post(f"{B}/auth/biometric/backup-codes", {}, format="json").status_code == 200


def test_no_authenticator_no_codes_and_the_last_one_takes_its_codes_along(member, client_for):
    client = client_for(member)
    assert client.post(f"{B}/auth/step-up/password", {"password": PASSWORD}, format="json").status_code == 200
    assert_envelope(client.post(f"{B}/auth/biometric/backup-codes", {}, format="json"), 400, "GENERAL_001")
    assert_envelope(_use(client, "00000-00000"), 403, "AUTH_002")

    first, second = _authenticator(), _authenticator()
    codes = _register(client, first).json()["backup_codes"]
    assert _register(client, second).status_code == 201
    ids = list(WebAuthnCredential.objects.filter(user=member.user).order_by("created_at").values_list("pk", flat=True))
    assert client.delete(f"{B}/auth/biometric/credentials/{ids[0]}").status_code == 204
    assert BackupCode.objects.filter(user=member.user).count() == 10  # one authenticator left: codes stay
    assert client.delete(f"{B}/auth/biometric/credentials/{ids[1]}").status_code == 204
    assert not BackupCode.objects.filter(user=member.user).exists()
    row = AuditEvent.objects.filter(organization=member.organization, action="stepup.authenticator.delete").latest("id")
    assert row.before["backup_codes_revoked"] == 10
    assert_envelope(_use(client, codes[0]), 403, "AUTH_002")
    # registering a first authenticator again issues a fresh set
    again = _register(client, _authenticator()).json()["backup_codes"]
    assert len(again) == 10 and not set(again) & set(codes)


def test_codes_never_reach_audit_rows_or_logs(member, client_for, caplog):
    client = client_for(member)
    authenticator = _authenticator()
    with caplog.at_level(logging.DEBUG):
        codes = _register(client, authenticator).json()["backup_codes"]
        assert _use(client, codes[0]).status_code == 200
        _use(client, codes[0])  # refused
        regenerated = client.post(f"{B}/auth/biometric/backup-codes", {}, format="json").json()["backup_codes"]
        assert _use(client, regenerated[0]).status_code == 200
    logs = "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records)
    rows = json.dumps(
        list(AuditEvent.objects.filter(organization=member.organization).values("action", "before", "after")),
        default=str,
    )
    assert "stepup.backup_codes.regenerate" in rows and "stepup.grant.backup_code" in rows
    for code in [*codes, *regenerated]:
        for form in (code, code.replace("-", "")):
            assert form not in rows and form not in logs, form
