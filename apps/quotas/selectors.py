"""Reads of plan quotas: the limits in force for an organization and how much of each is used."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime

import redis
from django.core.cache import cache
from django_redis.exceptions import ConnectionInterrupted

from apps.accounts.models import Organization
from apps.quotas import counter
from apps.quotas.models import QuotaOverride, QuotaPlan, QuotaRefusal, QuotaUsage
from apps.quotas.plans import DEFAULT_PLAN_LIMITS, FALLBACK_PLAN, QUOTAS, QuotaSpec

logger = logging.getLogger(__name__)

LIMITS_CACHE_SECONDS = 60


def limits_cache_key(organization_id) -> str:
    return f"quota-limits:{organization_id}"


def quota_limits(*, organization) -> dict:
    """``{"plan": str, "custom": [quota…], "limits": {quota: int}}`` for the organization: its plan's
    row (or the built-in default), with the staff override's non-empty fields on top. Cached for a
    minute in the shared cache; saving a plan, an override or the organization clears it."""
    org_id = getattr(organization, "pk", organization)
    key = limits_cache_key(org_id)
    try:
        cached = cache.get(key)
    except Exception:  # the cache is Redis; the database still answers
        cached = None
    if cached is not None:
        return cached

    plan = Organization.objects.filter(pk=org_id).values_list("plan", flat=True).first() or FALLBACK_PLAN
    defaults = DEFAULT_PLAN_LIMITS.get(plan, DEFAULT_PLAN_LIMITS[FALLBACK_PLAN])
    row = QuotaPlan.objects.filter(plan=plan).first()
    limits = {name: getattr(row, spec.field) if row is not None else defaults[name] for name, spec in QUOTAS.items()}
    custom = []
    override = QuotaOverride.objects.filter(organization_id=org_id).first()
    if override is not None:
        for name, spec in QUOTAS.items():
            value = getattr(override, spec.field)
            if value is not None:
                limits[name] = value
                custom.append(name)
    result = {"plan": plan, "custom": custom, "limits": limits}
    try:
        cache.set(key, result, LIMITS_CACHE_SECONDS)
    except Exception:
        pass
    return result


def now_ms() -> int:
    return int(time.time() * 1000)


def ms_to_datetime(value_ms: float | None) -> datetime | None:
    if value_ms is None:
        return None
    return datetime.fromtimestamp(value_ms / 1000, tz=UTC)


#: ``source → fn(*, organization_id, where: Q, since) -> [(pk, created_at)]``: the rows an app counts
#: for quotas of that source; the runs app provides "executions" (``RunsConfig.ready``).
_ROW_SOURCES: dict = {}


def register_row_source(source: str, fn) -> None:
    _ROW_SOURCES[source] = fn


def db_entries(
    *, organization_id, spec: QuotaSpec, since_ms: int, exclude: AbstractSet[str] = frozenset()
) -> list[tuple[int, str]]:
    """What the database says was counted in the window: ``(score_ms, member)`` oldest first."""
    since = ms_to_datetime(since_ms)
    entries: list[tuple[int, str]] = []
    if spec.source == "executions":
        # deferred: cycle — apps.quotas.services imports this module at load
        from apps.quotas.services import execution_filter

        rows = _ROW_SOURCES["executions"](
            organization_id=organization_id, where=execution_filter(spec.name), since=since
        )
        for pk, created_at in rows:
            member = str(pk)
            if member not in exclude:
                entries.append((int(created_at.timestamp() * 1000), member))
    else:
        rows = (
            QuotaUsage.objects.for_org(organization_id)
            .filter(quota=spec.name, created_at__gt=since)
            .values_list("pk", "amount", "created_at")
        )
        for pk, amount, created_at in rows:
            for index in range(amount):
                member = f"{pk}:{index}"
                if member not in exclude:
                    entries.append((int(created_at.timestamp() * 1000), member))
    entries.sort()
    return entries


def window_state(*, organization_id, spec: QuotaSpec, limit: int, members: list[str], now: int) -> counter.WindowState:
    """Run the window script, rebuilding the window from the database when Redis does not know it.
    Without Redis the database alone decides (slower, and not atomic across processes)."""
    key = counter.window_key(organization_id, spec.name)
    try:
        state = counter.consume(key, now_ms=now, window_seconds=spec.window_seconds, limit=limit, members=members)
        if state.status != -1:
            return state
        entries = db_entries(
            organization_id=organization_id, spec=spec, since_ms=now - spec.window_seconds * 1000, exclude=set(members)
        )
        counter.seed(key, window_seconds=spec.window_seconds, entries=entries)
        state = counter.consume(key, now_ms=now, window_seconds=spec.window_seconds, limit=limit, members=members)
        if state.status != -1:
            return state
    except Exception as exc:
        if not _is_redis_error(exc):
            raise
        logger.warning(
            "quota window %s of %s: Redis unavailable (%s); counting from the database", spec.name, organization_id, exc
        )
    entries = db_entries(
        organization_id=organization_id, spec=spec, since_ms=now - spec.window_seconds * 1000, exclude=set(members)
    )
    used = len(entries)
    if used + len(members) > limit:
        index = max(0, used + len(members) - limit - 1)
        return counter.WindowState(0, used, entries[index][0] if index < used else None)
    first = entries[0][0] if entries else (now if members else None)
    return counter.WindowState(1, used + len(members), first)


def _is_redis_error(exc: BaseException) -> bool:
    return isinstance(exc, (redis.ConnectionError, redis.TimeoutError, ConnectionInterrupted))


def quota_status(*, organization) -> dict:
    """``{quota: {limit, used, remaining, window, window_seconds, reset_at, custom}}`` — what
    ``GET usage`` shows as ``quotas``. ``reset_at`` is when the oldest counted unit leaves the
    sliding window (null when nothing is counted)."""
    org_id = getattr(organization, "pk", organization)
    resolved = quota_limits(organization=org_id)
    now = now_ms()
    out = {}
    for name, spec in QUOTAS.items():
        limit = resolved["limits"][name]
        state = window_state(organization_id=org_id, spec=spec, limit=limit, members=[], now=now)
        reset = ms_to_datetime(state.score_ms + spec.window_seconds * 1000) if state.used and state.score_ms else None
        out[name] = {
            "limit": limit,
            "used": state.used,
            "remaining": max(0, limit - state.used),
            "window": spec.window_name,
            "window_seconds": spec.window_seconds,
            "reset_at": reset,
            "plan": resolved["plan"],
            "custom": name in resolved["custom"],
        }
    return out


def retry_after_seconds(reset_at: datetime | None) -> int:
    if reset_at is None:
        return 1
    return max(1, math.ceil(reset_at.timestamp() - time.time()))


def quota_refusals(*, organization, source: str | None = None, source_id: str | None = None):
    queryset = QuotaRefusal.objects.for_org(organization)
    if source:
        queryset = queryset.filter(source=source)
    if source_id:
        queryset = queryset.filter(source_id=str(source_id))
    return queryset.order_by("-created_at")
