"""SCIM 2.0 writes: tokens, users (create, replace, patch, deactivate, delete) and groups. A user
deactivated or deleted here loses access at once: their membership goes, and when it was their
last one their account is deactivated and signed out everywhere (``user_sessions_revoke``)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import uuid

from django.db import transaction
from django.utils import timezone

from apps.accounts import services as accounts
from apps.accounts.models import Membership, User
from apps.audit.services import audit_record
from apps.sso.models import ScimGroup, ScimToken, ScimUser, SSOConnection
from apps.sso.signin import mapped_role

TOKEN_PREFIX = "scim_"
_ALPHABET = string.ascii_letters + string.digits


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def token_create(*, organization, actor, name: str) -> tuple[ScimToken, str]:
    prefix = "".join(secrets.choice(_ALPHABET) for _ in range(10))
    raw = f"{TOKEN_PREFIX}{prefix}_{''.join(secrets.choice(_ALPHABET) for _ in range(40))}"
    with transaction.atomic():
        token = ScimToken.objects.create(
            organization=organization, created_by=actor, name=name, prefix=prefix, token_hash=_digest(raw)
        )
        audit_record(
            organization=organization,
            actor=actor,
            action="scim.token.create",
            instance=token,
            after={"name": name, "prefix": prefix},
        )
    return token, raw


def token_revoke(*, token: ScimToken, actor) -> None:
    with transaction.atomic():
        if token.revoked_at is None:
            token.revoked_at = timezone.now()
            token.save(update_fields=["revoked_at", "updated_at"])
        audit_record(
            organization=token.organization,
            actor=actor,
            action="scim.token.revoke",
            instance=token,
            after={"revoked_at": token.revoked_at.isoformat()},
        )


def token_authenticate(raw: str) -> ScimToken | None:
    prefix, sep, _ = raw[len(TOKEN_PREFIX) :].partition("_") if raw.startswith(TOKEN_PREFIX) else ("", "", "")
    if not sep:
        return None
    token = ScimToken.objects.select_related("organization").filter(prefix=prefix, revoked_at__isnull=True).first()
    if token is None or not hmac.compare_digest(token.token_hash, _digest(raw)) or not token.organization.is_active:
        return None
    if token.last_used_at is None or (timezone.now() - token.last_used_at).total_seconds() > 60:
        ScimToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
    return token


# --- users ------------------------------------------------------------------------------------


class ScimError(Exception):
    """Rendered as a SCIM error (RFC 7644 §3.12)."""

    def __init__(self, status: int, detail: str, scim_type: str | None = None):
        super().__init__(detail)
        self.status, self.detail, self.scim_type = status, detail, scim_type


def _connection(organization):
    return SSOConnection.objects.for_org(organization).first()


def owns_identity(organization, user) -> bool:
    """The organization proved it owns the user's email domain: only then may SCIM switch the
    account itself off (else it only takes away this organization's membership)."""
    connection = _connection(organization)
    domain = user.email.rsplit("@", 1)[-1].lower()
    return bool(
        connection
        and domain in connection.allowed_domains
        and (connection.domains_confirmed_by_staff or domain in connection.verified_domains)
    )


def _default_role(organization) -> str:
    connection = _connection(organization)
    return connection.default_role if connection else "user"


def user_create(*, organization, token, email: str, full_name: str, external_id: str, active: bool):
    email = email.strip().lower()
    if not email or "@" not in email:
        raise ScimError(400, "userName must be an email address.", "invalidValue")
    with transaction.atomic():
        user = User.objects.filter(email__iexact=email).first()
        if user is None:
            user = User.objects.create_user(email=email, password=None, full_name=full_name[:200])
        elif ScimUser.objects.for_org(organization).filter(user=user).exists():
            raise ScimError(409, f"User {email} already exists.", "uniqueness")
        membership = Membership.objects.filter(organization=organization, user=user).first()
        role = membership.role if membership else _default_role(organization)
        scim_user = ScimUser.objects.create(
            organization=organization, user=user, external_id=external_id, active=True, role=role
        )
        if membership is None:
            Membership.objects.create(organization=organization, user=user, role=role)
        audit_record(
            organization=organization,
            actor=None,
            action="scim.user.create",
            instance=scim_user,
            after={"user": str(user.pk), "email": email, "role": role, "token": token.prefix},
        )
        if not active:
            _set_active(scim_user, False, token)
    return scim_user


def user_update(
    *, scim_user, token, full_name: str | None = None, external_id: str | None = None, active: bool | None = None
):
    with transaction.atomic():
        scim_user = ScimUser.objects.select_for_update().select_related("user").get(pk=scim_user.pk)
        before = {"full_name": scim_user.user.full_name, "external_id": scim_user.external_id}
        if full_name is not None and full_name != scim_user.user.full_name:
            scim_user.user.full_name = full_name[:200]
            scim_user.user.save(update_fields=["full_name", "updated_at"])
        if external_id is not None:
            scim_user.external_id = external_id
        scim_user.save()
        after = {"full_name": scim_user.user.full_name, "external_id": scim_user.external_id}
        if before != after:
            audit_record(
                organization=scim_user.organization,
                actor=None,
                action="scim.user.update",
                instance=scim_user,
                before=before,
                after={**after, "token": token.prefix},
            )
        if active is not None and active != scim_user.active:
            _set_active(scim_user, active, token)
    return scim_user


def _set_active(scim_user, active: bool, token) -> None:
    """Off: the membership goes (API keys made in it revoked) and, when the organization owns the
    identity and no other membership is left, the account is switched off and signed out
    everywhere. On: the membership comes back with the role it had."""
    organization, user = scim_user.organization, scim_user.user
    membership = Membership.objects.filter(organization=organization, user=user).first()
    if not active:
        if membership is not None:
            scim_user.role = membership.role
            accounts.membership_remove(membership=membership, actor=None)
        if owns_identity(organization, user) and not Membership.objects.filter(user=user).exists():
            user.is_active = False
            user.save(update_fields=["is_active", "updated_at"])
            accounts.user_sessions_revoke(user=user)
    else:
        if membership is None:
            Membership.objects.create(organization=organization, user=user, role=scim_user.role)
        if not user.is_active and owns_identity(organization, user):
            user.is_active = True
            user.save(update_fields=["is_active", "updated_at"])
    scim_user.active = active
    scim_user.save(update_fields=["active", "role", "updated_at"])
    audit_record(
        organization=organization,
        actor=None,
        action="scim.user.activate" if active else "scim.user.deactivate",
        instance=scim_user,
        after={"user": str(user.pk), "active": active, "account_active": user.is_active, "token": token.prefix},
    )


def user_delete(*, scim_user, token) -> None:
    with transaction.atomic():
        if scim_user.active:
            _set_active(scim_user, False, token)
        ScimGroup.members.through.objects.filter(
            scimgroup__organization=scim_user.organization, user_id=scim_user.user_id
        ).delete()
        audit_record(
            organization=scim_user.organization,
            actor=None,
            action="scim.user.delete",
            instance=scim_user,
            before={"user": str(scim_user.user_id), "external_id": scim_user.external_id},
            after=None,
        )
        scim_user.delete()


# --- groups -----------------------------------------------------------------------------------


def roles_sync(*, organization, user_ids) -> None:
    """Each member's role from the groups they are in (the connection's role mapping, highest
    wins; the default role with no mapped group). Owners keep their role."""
    connection = _connection(organization)
    if connection is None:
        return
    for membership in Membership.objects.filter(organization=organization, user_id__in=user_ids):
        if membership.role == "owner":
            continue
        names = list(
            ScimGroup.objects.for_org(organization)
            .filter(members=membership.user_id)
            .values_list("display_name", flat=True)
        )
        role = mapped_role(connection, {connection.role_claim or "groups": names})
        if role != membership.role:
            before = membership.role
            membership.role = role
            membership.save(update_fields=["role"])
            ScimUser.objects.for_org(organization).filter(user_id=membership.user_id).update(role=role)
            audit_record(
                organization=organization,
                actor=None,
                action="scim.role.change",
                instance=membership,
                before={"role": before},
                after={"role": role},
            )


def _members(organization, ids) -> list:
    users = list(
        ScimUser.objects.for_org(organization)
        .filter(user_id__in=[i for i in ids if _uuid(i)])
        .values_list("user_id", flat=True)
    )
    if len(users) != len(set(ids)):
        raise ScimError(400, "A member is not a user of this organization.", "invalidValue")
    return users


def _uuid(value) -> bool:
    try:
        uuid.UUID(str(value))
        return True
    except ValueError:
        return False


def group_save(
    *,
    organization,
    token,
    group=None,
    display_name: str | None = None,
    external_id: str | None = None,
    member_ids=None,
    add=(),
    remove=(),
):
    with transaction.atomic():
        created = group is None
        if created:
            if not display_name:
                raise ScimError(400, "displayName is required.", "invalidValue")
            if ScimGroup.objects.for_org(organization).filter(display_name=display_name).exists():
                raise ScimError(409, f"Group {display_name} already exists.", "uniqueness")
            group = ScimGroup.objects.create(
                organization=organization, display_name=display_name, external_id=external_id or ""
            )
        else:
            if display_name:
                group.display_name = display_name
            if external_id is not None:
                group.external_id = external_id
            group.save()
        before = set(group.members.values_list("id", flat=True))
        after = set(before)
        if member_ids is not None:
            after = set(_members(organization, member_ids))
        after |= set(_members(organization, add)) if add else set()
        after -= {u for u in before if str(u) in {str(r) for r in remove}}
        group.members.set(after)
        audit_record(
            organization=organization,
            actor=None,
            action="scim.group.create" if created else "scim.group.update",
            instance=group,
            after={"display_name": group.display_name, "members": sorted(str(u) for u in after), "token": token.prefix},
        )
        roles_sync(organization=organization, user_ids=before | after)
    return group


def group_delete(*, group, token) -> None:
    with transaction.atomic():
        organization = group.organization
        members = set(group.members.values_list("id", flat=True))
        audit_record(
            organization=organization,
            actor=None,
            action="scim.group.delete",
            instance=group,
            before={"display_name": group.display_name},
            after=None,
        )
        group.delete()
        roles_sync(organization=organization, user_ids=members)
