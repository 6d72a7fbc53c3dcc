"""Reads of the run engine that other apps use through registration (quotas)."""
from __future__ import annotations

from apps.runs.models import Execution


def executions_created_since(*, organization_id, where, since) -> list[tuple]:
    """``(pk, created_at)`` of the organization's runs matching ``where`` created after ``since``."""
    return list(Execution.objects.for_org(organization_id).filter(where, created_at__gt=since)
                .values_list("pk", "created_at"))
