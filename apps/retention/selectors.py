"""Reads of retention: the policy as the API shows it."""

from __future__ import annotations

from apps.retention.models import KINDS, RetentionPolicy, RetentionRun
from apps.retention.services import audit_min_days, effective_policy, plan_defaults


def policy_view(*, organization) -> dict:
    """Days in force per kind, which of them are the plan's defaults, the floor for audit rows and
    the last prune's counts."""
    stored = RetentionPolicy.objects.for_org(organization).first()
    last = RetentionRun.objects.for_org(organization).order_by("-created_at").first()
    return {
        **effective_policy(organization=organization),
        "plan": organization.plan,
        "defaults": plan_defaults(organization.plan),
        "overridden": sorted(k for k in KINDS if stored and getattr(stored, k) is not None),
        "audit_min_days": audit_min_days(),
        "kinds": KINDS,
        "last_prune": {"at": last.finished_at, "counts": last.counts, "seconds": last.seconds} if last else None,
    }
