"""Beat prunes every organization's data past its retention policy, one task per organization."""

from __future__ import annotations

import logging
from functools import partial

from celery import shared_task
from django.conf import settings
from django.db import transaction

from apps.accounts.models import Organization
from apps.retention.services import retention_prune

logger = logging.getLogger(__name__)


@shared_task(name="apps.retention.tasks.prune_all", ignore_result=True)
def prune_all() -> int:
    """Beat: queue a prune of each organization. Returns how many were queued."""
    ids = list(Organization.objects.values_list("pk", flat=True))
    for organization_id in ids:
        transaction.on_commit(partial(prune_organization.delay, str(organization_id)))
    return len(ids)


@shared_task(name="apps.retention.tasks.prune_organization", ignore_result=True)
def prune_organization(organization_id: str) -> dict:
    """Prune one organization (idempotent: a second run finds nothing more to delete)."""

    organization = Organization.objects.filter(pk=organization_id).first()
    if organization is None:
        return {}
    run = retention_prune(
        organization=organization,
        pause=settings.KAI_RETENTION_PAUSE_SECONDS,
        duty=settings.KAI_RETENTION_DUTY,
        niceness=settings.KAI_RETENTION_NICE,
    )
    return run.counts if run else {}
