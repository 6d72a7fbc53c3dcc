"""Writes of SSO connections: create/update/delete (client secret encrypted), domain ownership by
DNS TXT record or staff confirmation. Sign-ins are in ``signin.py``, SCIM in ``scim.py``."""

from __future__ import annotations

import secrets

from django.db import IntegrityError, transaction
from rest_framework import exceptions

from apps.agents import crypto
from apps.audit.services import audit_record, diff, snapshot
from apps.events.services import publish
from apps.sso.models import Protocol, SSOConnection
from kai_platform.api.errors import Conflict

#: the TXT record an organization publishes at ``_kai-verification.<domain>``
TXT_PREFIX = "kai-verification="
TXT_LABEL = "_kai-verification"

_SECRET_FIELDS = {"client_secret"}


def _apply(connection: SSOConnection, data: dict) -> None:
    for field, value in data.items():
        if field == "client_secret":
            if value:
                connection.client_secret_encrypted, connection.secret_key_id = crypto.encrypt(value)
        elif field == "allowed_domains":
            domains = sorted({d.strip().lower().lstrip("@") for d in value if d.strip()})
            if set(domains) != set(connection.allowed_domains):
                connection.verified_domains = [d for d in connection.verified_domains if d in domains]
                connection.domains_confirmed_by_staff = False  # staff confirmed another list
            connection.allowed_domains = domains
        else:
            setattr(connection, field, value)


def _validate(connection: SSOConnection) -> None:
    errors = {}
    if connection.protocol == Protocol.OIDC:
        for field in ("issuer_url", "client_id"):
            if not getattr(connection, field):
                errors[field] = ["Required for an OpenID Connect connection."]
        if not connection.client_secret_encrypted:
            errors["client_secret"] = ["Required for an OpenID Connect connection."]
    else:
        if not (
            connection.idp_metadata_xml
            or connection.idp_metadata_url
            or (connection.idp_entity_id and connection.idp_sso_url and connection.idp_x509cert)
        ):
            errors["idp_metadata_xml"] = [
                "Give the IdP metadata (XML or URL), or its entity id, SSO URL and signing certificate."
            ]
    if connection.enforced and not connection.allowed_domains:
        errors["enforced"] = ["An enforced connection needs at least one allowed email domain."]
    if errors:
        raise exceptions.ValidationError(errors)


def connection_create(*, organization, actor, data: dict) -> SSOConnection:
    connection = SSOConnection(
        organization=organization, created_by=actor, domain_verification_token=secrets.token_urlsafe(24)
    )
    _apply(connection, data)
    _validate(connection)
    try:
        with transaction.atomic():
            connection.save()
            audit_record(
                organization=organization,
                actor=actor,
                action="sso.connection.create",
                instance=connection,
                after=snapshot(connection),
            )
    except IntegrityError:
        raise Conflict("This organization already has an SSO connection; change or delete it.")
    publish(
        organization,
        "sso.connection.created",
        {"connection_id": str(connection.pk), "protocol": connection.protocol},
        actor=actor,
        component="sso",
    )
    return connection


def connection_update(*, connection: SSOConnection, actor, data: dict) -> SSOConnection:
    with transaction.atomic():
        connection = SSOConnection.objects.select_for_update().get(pk=connection.pk)
        before = snapshot(connection)
        _apply(connection, data)
        _validate(connection)
        connection.save()
        changed_before, changed_after = diff(before, snapshot(connection))
        audit_record(
            organization=connection.organization,
            actor=actor,
            action="sso.connection.update",
            instance=connection,
            before=changed_before,
            after=changed_after,
        )
    return connection


def connection_delete(*, connection: SSOConnection, actor) -> None:
    with transaction.atomic():
        audit_record(
            organization=connection.organization,
            actor=actor,
            action="sso.connection.delete",
            instance=connection,
            before=snapshot(connection),
        )
        connection.delete()


def client_secret(connection: SSOConnection) -> str:
    return crypto.decrypt(connection.client_secret_encrypted) if connection.client_secret_encrypted else ""


def _txt_records(domain: str, resolver) -> list[str]:
    # deferred: heavy — dnspython, loaded on first use to keep process start fast
    import dns.exception
    import dns.resolver

    resolver = resolver or dns.resolver.Resolver()
    try:
        answer = resolver.resolve(f"{TXT_LABEL}.{domain}", "TXT", lifetime=5)
    except (dns.exception.DNSException, OSError):
        return []
    return [b"".join(record.strings).decode(errors="replace") for record in answer]


def connection_verify_domains(*, connection: SSOConnection, actor, resolver=None) -> SSOConnection:
    """Look up each allowed domain's TXT record; the ones that carry the connection's token count
    as owned. ``resolver`` is a ``dns.resolver.Resolver``-like object (tests pass their own)."""
    expected = f"{TXT_PREFIX}{connection.domain_verification_token}"
    owned = [d for d in connection.allowed_domains if expected in _txt_records(d, resolver)]
    with transaction.atomic():
        before = list(connection.verified_domains)
        connection.verified_domains = sorted(set(connection.verified_domains) | set(owned))
        connection.save(update_fields=["verified_domains", "updated_at"])
        audit_record(
            organization=connection.organization,
            actor=actor,
            action="sso.domain.verify",
            instance=connection,
            before={"verified_domains": before},
            after={"verified_domains": connection.verified_domains, "checked": connection.allowed_domains},
        )
    return connection


def connection_confirm_domains(*, connection: SSOConnection, actor) -> SSOConnection:
    """Platform staff vouch (in the operator console) that the organization owns its domains."""
    with transaction.atomic():
        before = snapshot(connection)
        connection.domains_confirmed_by_staff = True
        connection.save(update_fields=["domains_confirmed_by_staff", "updated_at"])
        changed_before, changed_after = diff(before, snapshot(connection))
        audit_record(
            organization=connection.organization,
            actor=actor,
            action="sso.domain.confirm",
            instance=connection,
            before=changed_before,
            after=changed_after,
        )
    return connection


def connections_rotate_secrets(*, batch_size: int = 500) -> int:
    """Re-encrypt every SSO client secret under the newest ``KAI_SECRET_KEYS`` key (``rotate_secrets``)."""
    rotated = 0
    primary = crypto.primary_key_id()
    while True:
        with transaction.atomic():
            batch = list(
                SSOConnection.objects.select_for_update(skip_locked=True)
                .exclude(secret_key_id=primary)
                .exclude(client_secret_encrypted="")
                .order_by("pk")[:batch_size]
            )
            for connection in batch:
                connection.client_secret_encrypted, connection.secret_key_id = crypto.rotate(
                    connection.client_secret_encrypted
                )
                connection.save(update_fields=["client_secret_encrypted", "secret_key_id", "updated_at"])
        rotated += len(batch)
        if len(batch) < batch_size:
            return rotated
