"""The brakes on guessing an account's secrets (kai_platform.api.backoff), per account and per
account + address: a lock of either refuses every attempt for the account with 429.

Subjects are the normalized email as typed, whether or not an account has it, so an unknown
address is counted, locked and answered exactly like a known one (no enumeration). The failures
of one address are kept apart from the account's so that the owner's success, which forgets the
account's failures, leaves the guessing address's escalation in place.
"""

from __future__ import annotations

import logging

from django.db import transaction

from apps.accounts.models import User
from kai_platform.api.backoff import Policy, record_failure, refuse_if_locked, reset

# audit and events sit above accounts (docs/architecture.md): reached through their ports
from kai_platform.ports import audit_record, publish

logger = logging.getLogger("kai.security")

#: password sign-ins, and the current password of a password change
PASSWORD = Policy("password")
#: emails sent on request: sign-in links and password resets
MAIL = Policy("mail")
#: the step-up password re-check (counted per user id)
STEP_UP = Policy("stepup")
#: refresh tokens and sign-in/reset links that do not verify, per address (no account is known)
BAD_TOKEN = Policy("token", allowed_setting="KAI_AUTH_ADDRESS_FAILURES_ALLOWED")

_LOCKED_DETAIL = "Too many attempts for this account; try again later."


def normalize(email: str) -> str:
    return (email or "").strip().lower()


def _subjects(policy: Policy, account: str, address: str) -> list[tuple[Policy, str]]:
    return [(policy, account), (policy, f"{account}\0{address}")]


def guard(policy: Policy, *, account: str, address: str) -> None:
    """429 while the account, or the account from this address, is locked."""
    refuse_if_locked(_subjects(policy, account, address), _LOCKED_DETAIL)


def failed(policy: Policy, *, account: str, address: str, user: User | None = None) -> None:
    """Count one failure for the account and for the account + address; announce a lock it starts."""
    account_lock = record_failure(policy, account)
    address_lock = record_failure(policy, f"{account}\0{address}")
    if account_lock or address_lock:
        if user is None and "@" in account:
            user = User.objects.filter(email__iexact=account, is_active=True).first()
        _announce(
            policy,
            user=user,
            address=address,
            seconds=max(account_lock, address_lock),
            whole_account=bool(account_lock),
        )


def succeeded(policy: Policy, *, account: str, address: str) -> None:
    reset(_subjects(policy, account, address))


def guard_address(policy: Policy, *, address: str) -> None:
    """429 while this address is locked for ``policy`` (attempts that name no account)."""
    refuse_if_locked([(policy, address)], "Too many failed attempts from this address; try again later.")


def failed_address(policy: Policy, *, address: str) -> None:
    seconds = record_failure(policy, address)
    if seconds:
        logger.warning("address lock: %s for %ss from %s", policy.name, seconds, address)


def _announce(policy: Policy, *, user: User | None, address: str, seconds: int, whole_account: bool) -> None:
    """An audit row and a hub event (owners and admins see it, and the user) in each of the user's
    organizations; a log line in any case (an unknown email has no organization)."""
    logger.warning(
        "sign-in lock: %s for %ss (%s) from %s",
        policy.name,
        seconds,
        "account" if whole_account else "account from this address",
        address,
        extra={"user_id": str(user.pk) if user else None},
    )
    if user is None:
        return
    data = {
        "user_id": str(user.pk),
        "email": user.email,
        "attempt": policy.name,
        "locked_seconds": seconds,
        "scope": "account" if whole_account else "address",
        "address": address,
    }
    with transaction.atomic():
        for membership in user.memberships.select_related("organization"):
            organization = membership.organization
            audit_record(
                organization=organization,
                actor=None,
                action="auth.lock",
                instance=user,
                after=data,
                actor_type="system",
            )
            publish(organization, "auth.account_locked", data, owner=user.pk, severity="warning", component="accounts")
