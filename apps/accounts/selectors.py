"""Reads of accounts data."""

from __future__ import annotations

import uuid

from apps.accounts.models import ApiKey, Membership, User


def user_and_membership(*, user_id, organization_ref: str | None):
    """The active user and the membership the request acts through, in one query.

    ``organization_ref`` is an organization id or slug (``X-Organization``); without it, the
    user's first membership. Returns ``(None, None)`` for an unknown/inactive user and
    ``(user, None)`` when the user has no (matching) membership.
    """
    if not user_id:
        return None, None
    try:
        user_uuid = uuid.UUID(str(user_id))
    except ValueError:
        return None, None
    memberships = Membership.objects.select_related("user", "organization").filter(
        user_id=user_uuid, user__is_active=True, organization__is_active=True
    )
    if organization_ref:
        try:
            memberships = memberships.filter(organization_id=uuid.UUID(organization_ref))
        except ValueError:
            memberships = memberships.filter(organization__slug=organization_ref)
    membership = memberships.order_by("created_at").first()
    if membership is not None:
        return membership.user, membership
    user = User.objects.filter(pk=user_uuid, is_active=True).first()
    return user, None


def memberships_of(*, user) -> list[Membership]:
    return list(Membership.objects.select_related("organization").filter(user=user).order_by("created_at"))


def api_key_by_prefix(*, prefix: str) -> ApiKey | None:
    return ApiKey.objects.select_related("organization", "created_by").filter(prefix=prefix).first()


def live_api_key_ids(*, key_ids) -> set:
    """The ids among ``key_ids`` of API keys not revoked (the sockets' credential re-check)."""
    if not key_ids:
        return set()
    return set(ApiKey.objects.filter(pk__in=key_ids, revoked_at__isnull=True).values_list("pk", flat=True))


def live_members(*, user_ids, with_no_organization: bool) -> set[tuple[uuid.UUID, uuid.UUID | None]]:
    """``(user id, organization id)`` of the active users among ``user_ids`` and their memberships,
    plus ``(user id, None)`` for each active user when ``with_no_organization``."""
    if not user_ids:
        return set()
    live: set[tuple[uuid.UUID, uuid.UUID | None]] = set(
        Membership.objects.filter(user_id__in=user_ids, user__is_active=True).values_list("user_id", "organization_id")
    )
    if with_no_organization:
        live |= {(pk, None) for pk in User.objects.filter(pk__in=user_ids, is_active=True).values_list("pk", flat=True)}
    return live
