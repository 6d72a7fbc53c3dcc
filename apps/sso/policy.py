"""Sign-in policy of enforced SSO connections: members of such an organization sign in only
through SSO; its owners keep a break-glass password sign-in behind a step-up backup code."""

from __future__ import annotations

from rest_framework import status

from apps.accounts.models import Membership
from apps.audit.services import audit_record
from apps.sso.models import SSOConnection
from apps.stepup import services as stepup
from kai_platform.api.errors import codes
from kai_platform.api.errors.exceptions import KaiAPIException
from kai_platform.tenancy.roles import Role


class SSORequired(KaiAPIException):
    status_code = status.HTTP_403_FORBIDDEN
    default_detail = "This organization signs in through single sign-on only."
    error_type = "sso_required"
    kai_code = codes.UNAUTHORIZED


def enforced_memberships(user):
    return Membership.objects.filter(
        user=user,
        organization__is_active=True,
        organization_id__in=_enforced_org_ids(),
    ).select_related("organization")


def _enforced_org_ids():
    return SSOConnection.objects.filter(enforced=True, is_active=True).values("organization_id")


def check_password_login(*, user, step_up_code: str | None = None) -> None:
    memberships = list(enforced_memberships(user))
    if not memberships:
        return
    members = [m for m in memberships if m.role != Role.OWNER]
    if members:
        org = members[0].organization
        raise SSORequired(
            f"{org.name} signs in through single sign-on only.",
            extra={"sso_login_url": f"/api/v1/auth/sso/{org.slug}/login"},
        )
    # owners of enforced organizations only: break glass with one of their step-up backup codes
    organization = memberships[0].organization
    if not step_up_code:
        raise SSORequired(
            "Break-glass password sign-in of an owner needs a step-up backup code (step_up_code).",
            extra={"sso_login_url": f"/api/v1/auth/sso/{organization.slug}/login"},
        )
    stepup.backup_code_verify(user=user, session_id="sso-break-glass", organization=organization, code=step_up_code)
    for membership in memberships:
        audit_record(
            organization=membership.organization,
            actor=user,
            action="sso.break_glass_login",
            instance=user,
            after={"user": str(user.pk), "method": "password+backup_code"},
        )
