"""Retention policies (writes) and the prune of one organization's data past them."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.core.files.storage import default_storage
from django.db import models, transaction
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from apps.audit.models import AuditEvent
from apps.audit.services import audit_record, snapshot
from apps.events.models import Event
from apps.files.models import StoredFile
from apps.retention import pruning
from apps.retention.models import KINDS, Keep, RetentionPolicy, RetentionRun
from apps.runs.models import TERMINAL_STATUSES, Execution, UsageRollup
from apps.runs.models import ExecutionStatus as S
from apps.webhooks.models import WebhookDelivery

logger = logging.getLogger(__name__)

#: days kept by plan for runs, events, webhook deliveries and files of runs
PLAN_DAYS = {"free": 30, "standard": 30, "pro": 90, "enterprise": 365}
#: audit rows and usage detail are kept a year on every plan (billing and compliance questions)
YEAR = 365
#: with ``keep: failed_only`` a completed run stays this long (its caller can still read the result)
COMPLETED_GRACE = timedelta(days=1)
#: one prune per organization at a time (a Redis lock: a prune commits batch by batch, so no
#: transaction-scoped database lock would cover it); expires in case a worker dies mid-prune
PRUNE_LOCK_SECONDS = 3600


def audit_min_days() -> int:
    return int(getattr(settings, "KAI_AUDIT_MIN_DAYS", 90))


def plan_defaults(plan: str) -> dict:
    days = PLAN_DAYS.get(plan, PLAN_DAYS["standard"])
    return {
        "executions_days": days,
        "events_days": days,
        "usage_days": YEAR,
        "audit_days": max(YEAR, audit_min_days()),
        "webhook_deliveries_days": days,
        "files_days": days,
        "keep": Keep.ALL,
    }


def effective_policy(*, organization) -> dict:
    """The days in force per kind (the organization's choice, else its plan's default)."""
    policy = RetentionPolicy.objects.for_org(organization).first()
    values = plan_defaults(organization.plan)
    if policy:
        values.update({k: getattr(policy, k) for k in KINDS if getattr(policy, k) is not None})
        values["keep"] = policy.keep
    values["audit_days"] = max(values["audit_days"], audit_min_days())
    return values


def retention_policy_update(*, organization, actor, data: dict) -> RetentionPolicy:
    """Set some of the policy's values (null: back to the plan's default). Audit rows are never
    kept less than ``KAI_AUDIT_MIN_DAYS``."""
    if data.get("audit_days") is not None and data["audit_days"] < audit_min_days():
        raise ValidationError({"audit_days": [f"Audit rows are kept at least {audit_min_days()} days."]})
    with transaction.atomic():
        policy, _ = RetentionPolicy.objects.select_for_update().get_or_create(
            organization=organization, defaults={"created_by": actor if actor.is_authenticated else None}
        )
        before = snapshot(policy, [*KINDS, "keep"])
        for name, value in data.items():
            setattr(policy, name, value)
        policy.save()
        audit_record(
            organization=organization,
            actor=actor,
            action="retention.update",
            instance=policy,
            before=before,
            after=snapshot(policy, [*KINDS, "keep"]),
        )
    return policy


# --- the prune ----------------------------------------------------------------------------------


def _finished_runs(organization, policy: dict, now) -> models.Q:
    cutoff = now - timedelta(days=policy["executions_days"])
    old = models.Q(status__in=[S.COMPLETED, S.FAILED, S.CANCELLED], completed_at__lt=cutoff)
    if policy["keep"] == Keep.FAILED_ONLY:
        old |= models.Q(status=S.COMPLETED, completed_at__lt=now - COMPLETED_GRACE)
    return models.Q(organization=organization, parent__isnull=True) & old


def _prune_files(organization, policy: dict, now, pruner: pruning.Pruner) -> None:
    """Files attached to runs that finished before the files cutoff (or whose run is gone)."""

    cutoff = now - timedelta(days=policy["files_days"])
    finished = Execution.objects.for_org(organization).filter(status__in=TERMINAL_STATUSES, completed_at__lt=cutoff)
    orphaned = ~models.Exists(Execution.objects.filter(pk=models.OuterRef("execution_id")))
    lookup = models.Q(organization=organization, execution_id__isnull=False) & (
        models.Q(execution_id__in=finished.values("pk")) | (orphaned & models.Q(created_at__lt=cutoff))
    )
    while True:
        rows = list(
            StoredFile.objects.for_org(organization).filter(lookup).values_list("pk", "storage_key")[: pruner.batch]
        )
        if not rows:
            return
        pruner.delete_pks(StoredFile, [pk for pk, _ in rows])
        for _, key in rows:
            try:
                default_storage.delete(key)
            except Exception:
                logger.warning("retention: could not delete stored object %s", key, exc_info=True)


def _prune_all_kinds(organization, policy: dict, now, pruner: pruning.Pruner) -> None:
    def day(kind: str):
        return now - timedelta(days=policy[kind])

    _prune_files(organization, policy, now, pruner)
    pruner.delete_where(Execution, _finished_runs(organization, policy, now), order="created_at")
    org = models.Q(organization=organization)
    pruner.delete_where(Event, org & models.Q(created_at__lt=day("events_days")), order="id")
    pruner.delete_where(UsageRollup, org & models.Q(day__lt=day("usage_days").date()))
    pruner.delete_where(
        WebhookDelivery, org & models.Q(created_at__lt=day("webhook_deliveries_days")), order="created_at"
    )
    pruner.delete_where(AuditEvent, org & models.Q(created_at__lt=day("audit_days")), order="id")
    pruner.delete_where(RetentionRun, org & models.Q(created_at__lt=day("audit_days")), order="created_at")


def retention_prune(
    *, organization, now=None, pause: float = 0.0, duty: float = 1.0, niceness: int = 0
) -> RetentionRun | None:
    """Delete what the organization's policy no longer keeps, in batches (``pause``/``duty``: how
    it rests between statements, ``niceness``: its CPU priority; see ``pruning``); record the
    counts (a ``RetentionRun`` and an audit row) when anything went. None when another prune of
    this organization is running or nothing was due."""
    now = now or timezone.now()
    policy = effective_policy(organization=organization)
    cutoffs = {kind: (now - timedelta(days=policy[kind])).isoformat() for kind in KINDS}
    pruner = pruning.Pruner(pause=pause, duty=duty)
    counts = pruner.counts
    started = time.monotonic()
    lock_key = f"retention:prune:{organization.pk}"
    if not cache.add(lock_key, 1, PRUNE_LOCK_SECONDS):
        return None
    try:
        with pruning.lowered_priority(niceness):
            _prune_all_kinds(organization, policy, now, pruner)
    finally:
        cache.delete(lock_key)
    counts = +counts  # the tables a prune looked at but found nothing in are not news
    if not counts:
        return None
    with transaction.atomic():
        run = RetentionRun.objects.create(
            organization=organization,
            finished_at=timezone.now(),
            counts=dict(counts),
            cutoffs=cutoffs,
            seconds=round(time.monotonic() - started, 3),
        )
        audit_record(
            organization=organization,
            actor=None,
            action="retention.prune",
            instance=run,
            after={"counts": dict(counts), "cutoffs": cutoffs, "pace": pruner.stats()},
        )
    logger.info("retention: organization %s pruned %s (%s)", organization.pk, dict(counts), pruner.stats())
    return run
