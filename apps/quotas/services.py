"""Writes of plan quotas: the one enforcement service, the per-execution hook, refusal records,
and the staff edits of plans and overrides.

Every accepted run passes through ``quota_consume`` (the run engine's ``execution_create`` calls
``quota_consume_for_execution`` for REST, socket, MCP, schedule and workflow runs alike). Windows
slide and are counted in Redis (``apps.quotas.counter``), rebuilt from the database when Redis
does not have them: the Execution table for runs, ``QuotaUsage`` rows for ledger quotas.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime

from django.core.cache import cache
from django.db import transaction
from django.db.models import Q

from apps.audit.services import audit_record, snapshot
from apps.events.services import publish
from apps.quotas import counter
from apps.quotas.errors import QuotaExceeded
from apps.quotas.models import QuotaOverride, QuotaPlan, QuotaRefusal, QuotaUsage
from apps.quotas.plans import AGENT_EXECUTIONS, QUOTAS, WARNING_RATIO, WORKFLOW_EXECUTIONS
from apps.quotas.plans import spec as quota_spec
from apps.quotas.selectors import (
    db_entries,
    limits_cache_key,
    ms_to_datetime,
    now_ms,
    quota_limits,
    retry_after_seconds,
    window_state,
)

logger = logging.getLogger(__name__)

WORKFLOW_KIND = "workflow"
WORKFLOW_STEP_KIND = "workflow_step"


@dataclass(frozen=True)
class QuotaResult:
    quota: str
    limit: int
    used: int
    remaining: int
    window_seconds: int
    reset_at: datetime | None
    counted: bool  # False when ``ref`` had been counted already, or for a check without a ref


# --- which runs count ---------------------------------------------------------------------------


def execution_quota(*, kind: str, parent_id) -> str | None:
    """The quota a run of ``kind`` counts against: top-level workflow runs → ``workflow_executions``,
    every other top-level run (crew, orchestration, agent task/command/execute/prompt/test) →
    ``agent_executions``; a child run (a workflow step, a sub-run) is part of its parent's unit."""
    if parent_id is not None or kind == WORKFLOW_STEP_KIND:
        return None
    return WORKFLOW_EXECUTIONS if kind == WORKFLOW_KIND else AGENT_EXECUTIONS


def execution_filter(quota: str) -> Q:
    """The Execution rows ``quota`` counts (the database side of ``execution_quota``)."""
    top_level = Q(parent__isnull=True)
    if quota == WORKFLOW_EXECUTIONS:
        return top_level & Q(kind=WORKFLOW_KIND)
    return top_level & ~Q(kind__in=[WORKFLOW_KIND, WORKFLOW_STEP_KIND])


# --- enforcement --------------------------------------------------------------------------------


def quota_consume(*, organization, quota: str, amount: int = 1, source: str = "", ref=None) -> QuotaResult:
    """Count ``amount`` units of ``quota`` for the organization, or refuse.

    Call it where a unit of work is accepted, inside the transaction that records it (a refusal
    then rolls that back). Raises ``apps.quotas.errors.QuotaExceeded`` — 429 ``GENERAL_002`` with
    ``quota: {name, limit, used, window, window_seconds, reset_at, retry_after, plan, custom}`` in
    the envelope — when the sliding window has no room; on success may publish ``quota.warning``
    (hub name ``quota_warning``) once per window at 80 % of the limit.

    - ``agent_executions`` / ``workflow_executions`` count ``Execution`` rows and are consumed by
      ``apps.runs.services.execution_create`` itself: callers need not (and a second call with
      ``ref=<execution id>`` counts nothing). Without ``ref`` it only checks for room (refuse
      early, before building a run) and counts nothing.
    - ``voice_commands`` (and any ledger quota): the call writes a ``QuotaUsage`` row — the
      database's record the window is rebuilt from — e.g. ``quota_consume(organization=org,
      quota="voice_commands", source="rest")`` before processing a command. A ``ref`` (your id of
      the command) makes a retried call count once.
    ``source`` says where the unit came from (rest, socket, mcp, schedule, workflow, voice…).
    """
    spec = quota_spec(quota)
    amount = int(amount)
    if amount < 1:
        raise ValueError("amount must be at least 1")
    org_id = getattr(organization, "pk", organization)
    resolved = quota_limits(organization=org_id)
    limit = resolved["limits"][quota]
    now = now_ms()
    ref = str(ref) if ref not in (None, "") else ""

    if spec.source == "executions":
        members = [ref] if ref else []
        if not ref:  # a check for room: refuse what would not fit, count nothing
            state = window_state(organization_id=org_id, spec=spec, limit=limit, members=[], now=now)
            if state.used + amount > limit:
                state = counter.WindowState(0, state.used, _make_room_score(org_id, spec, limit, amount, now))
        else:
            state = window_state(organization_id=org_id, spec=spec, limit=limit, members=members, now=now)
        if state.status == 0:
            raise _exceeded(spec, resolved, limit, state)
        result = _result(spec, limit, state, counted=state.status == 1 and bool(ref))
    else:
        with transaction.atomic():
            if ref and QuotaUsage.objects.for_org(org_id).filter(quota=quota, ref=ref).exists():
                state = window_state(organization_id=org_id, spec=spec, limit=limit, members=[], now=now)
                return _result(spec, limit, state, counted=False)
            usage = QuotaUsage(organization_id=org_id, quota=quota, amount=amount, source=source[:40], ref=ref[:200])
            members = [f"{usage.pk}:{index}" for index in range(amount)]
            state = window_state(organization_id=org_id, spec=spec, limit=limit, members=members, now=now)
            if state.status == 0:
                raise _exceeded(spec, resolved, limit, state)
            usage.save(force_insert=True)
        result = _result(spec, limit, state, counted=True)
    if result.counted:
        _maybe_warn(org_id, spec, resolved, result)
    return result


def quota_consume_for_execution(*, execution, source: str = "") -> QuotaResult | None:
    """The run engine's hook: count a just-created run against its quota (see ``execution_quota``).
    Called by ``execution_create`` inside its transaction, so a refusal leaves no run behind."""
    quota = execution_quota(kind=execution.kind, parent_id=execution.parent_id)
    if quota is None:
        return None
    return quota_consume(
        organization=execution.organization_id, quota=quota, ref=execution.pk, source=source or execution.kind
    )


def quota_consume_for_executions(*, executions: list) -> dict:
    """``quota_consume_for_execution`` of many just-built runs of ONE organization in one window
    step per quota (the run engine's batch create): every run that fits is counted; the runs past
    the limit are refused as each would have been alone, in order (the first ones fit). Returns
    ``{index in executions: QuotaExceeded}``."""
    by_quota: dict[str, list[int]] = {}
    for index, execution in enumerate(executions):
        quota = execution_quota(kind=execution.kind, parent_id=execution.parent_id)
        if quota is not None:
            by_quota.setdefault(quota, []).append(index)
    refused: dict = {}
    for quota, indexes in by_quota.items():
        org_id = executions[indexes[0]].organization_id
        spec = quota_spec(quota)
        resolved = quota_limits(organization=org_id)
        limit = resolved["limits"][quota]
        refs = [str(executions[index].pk) for index in indexes]
        state = window_state(organization_id=org_id, spec=spec, limit=limit, members=refs, now=now_ms())
        fit = len(refs)
        if state.status == 0:  # not all fit: count the first ones that do, refuse the rest
            fit = max(0, limit - state.used)
            if fit:
                state = window_state(organization_id=org_id, spec=spec, limit=limit, members=refs[:fit], now=now_ms())
                fit = fit if state.status == 1 else 0  # another writer took the room meanwhile
            full = window_state(organization_id=org_id, spec=spec, limit=limit, members=[], now=now_ms())
            error = _exceeded(
                spec,
                resolved,
                limit,
                counter.WindowState(0, full.used, _make_room_score(org_id, spec, limit, 1, now_ms())),
            )
            refused.update({index: error for index in indexes[fit:]})
        if fit and state.status == 1:
            _maybe_warn(org_id, spec, resolved, _result(spec, limit, state, counted=True))
    return refused


def _make_room_score(org_id, spec, limit: int, amount: int, now: int) -> float | None:
    entries = db_entries(organization_id=org_id, spec=spec, since_ms=now - spec.window_seconds * 1000)
    index = max(0, len(entries) + amount - limit - 1)
    return entries[index][0] if index < len(entries) else None


def _reset_at(spec, score_ms) -> datetime | None:
    return ms_to_datetime(score_ms + spec.window_seconds * 1000) if score_ms is not None else None


def _result(spec, limit: int, state: counter.WindowState, *, counted: bool) -> QuotaResult:
    return QuotaResult(
        quota=spec.name,
        limit=limit,
        used=state.used,
        remaining=max(0, limit - state.used),
        window_seconds=spec.window_seconds,
        reset_at=_reset_at(spec, state.score_ms) if state.used else None,
        counted=counted,
    )


def _exceeded(spec, resolved: dict, limit: int, state: counter.WindowState) -> QuotaExceeded:
    reset_at = _reset_at(spec, state.score_ms)
    return QuotaExceeded(
        quota=spec.name,
        unit=spec.unit,
        limit=limit,
        used=state.used,
        window=spec.window_name,
        window_seconds=spec.window_seconds,
        reset_at=reset_at,
        retry_after=retry_after_seconds(reset_at),
        plan=resolved["plan"],
        custom=spec.name in resolved["custom"],
    )


def _maybe_warn(org_id, spec, resolved: dict, result: QuotaResult) -> None:
    if result.limit <= 0 or result.used < math.ceil(WARNING_RATIO * result.limit):
        return
    try:
        first = counter.mark_warned(org_id, spec.name, window_seconds=spec.window_seconds)
    except Exception:
        logger.warning("could not record the quota warning of %s/%s in Redis", org_id, spec.name)
        return
    if first:
        publish(
            org_id,
            "quota.warning",
            {
                "quota": spec.name,
                "limit": result.limit,
                "used": result.used,
                "remaining": result.remaining,
                "window": spec.window_name,
                "window_seconds": spec.window_seconds,
                "reset_at": result.reset_at.isoformat() if result.reset_at else None,
                "percent": round(100 * result.used / result.limit),
                "plan": resolved["plan"],
            },
            component="quotas",
            severity="warning",
        )


# --- refusals kept for history ------------------------------------------------------------------


def quota_refusal_record(
    *, organization, error: QuotaExceeded, source: str, source_id="", detail: dict | None = None
) -> QuotaRefusal:
    """Keep a refusal nobody saw as a 429 (a scheduled tick): the schedule's history shows it."""
    quota = error.quota
    reset_at = quota["reset_at"]
    return QuotaRefusal.objects.create(
        organization_id=getattr(organization, "pk", organization),
        quota=quota["name"],
        limit=quota["limit"],
        used=quota["used"],
        window_seconds=quota["window_seconds"],
        reset_at=datetime.fromisoformat(reset_at) if reset_at else None,
        source=source[:40],
        source_id=str(source_id or "")[:64],
        detail={**(detail or {}), "message": str(error.detail)},
    )


# --- staff edits (operator console) -------------------------------------------------------------


def quota_limits_forget(*, organization_ids=None) -> None:
    """Drop cached limits (all organizations when ``organization_ids`` is None)."""
    try:
        if organization_ids is None:
            cache.delete_pattern(limits_cache_key("*"))  # type: ignore[attr-defined]  # django-redis backend (CACHES)
        else:
            cache.delete_many([limits_cache_key(org_id) for org_id in organization_ids])
    except Exception:
        logger.warning("could not clear cached quota limits; they expire within a minute")


def quota_plan_save(*, plan: QuotaPlan, actor, before: dict | None = None) -> QuotaPlan:
    with transaction.atomic():
        plan.save()
        audit_record(
            organization=None,
            actor=actor,
            action="quota_plan.update",
            instance=plan,
            before=before,
            after=snapshot(plan),
        )
    return plan


def quota_override_save(*, override: QuotaOverride, actor, before: dict | None = None) -> QuotaOverride:
    with transaction.atomic():
        if getattr(actor, "is_authenticated", False):
            override.updated_by = actor
        override.save()
        audit_record(
            organization=override.organization,
            actor=actor,
            action="quota_override.create" if before is None else "quota_override.update",
            instance=override,
            before=before,
            after=snapshot(override),
        )
    return override


def quota_override_delete(*, override: QuotaOverride, actor) -> None:
    with transaction.atomic():
        audit_record(
            organization=override.organization,
            actor=actor,
            action="quota_override.delete",
            instance=override,
            before=snapshot(override),
        )
        override.delete()


__all__ = [
    "QUOTAS",
    "QuotaExceeded",
    "QuotaResult",
    "execution_quota",
    "quota_consume",
    "quota_consume_for_execution",
    "quota_refusal_record",
]
