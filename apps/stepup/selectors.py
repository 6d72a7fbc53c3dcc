"""Reads of apps.stepup."""

from __future__ import annotations

from django.db.models import Count, Max, Q

from apps.stepup.models import BackupCode


def backup_codes_state(*, user) -> dict:
    """How many of the user's backup codes are left (never the codes: only digests are stored)."""
    row = BackupCode.objects.filter(user=user).aggregate(
        total=Count("id"), remaining=Count("id", filter=Q(used_at__isnull=True)), generated_at=Max("created_at")
    )
    return {"remaining": row["remaining"], "total": row["total"], "generated_at": row["generated_at"]}
