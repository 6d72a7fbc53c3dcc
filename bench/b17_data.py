"""B17's database side, run in a child process (bench/child.py) with the bench environment:

- ``phase="seed"``: an organization (free plan: 30 days) with ``rows`` rows past its retention —
  finished runs, each with logs and spans, and events — cloned in SQL from one row of each made
  by the product's services and models (a bulk INSERT … SELECT per table).
- ``phase="prune"``: ``apps.retention.services.retention_prune`` of that organization with the
  product's pacing settings, timed (prints a marker when it starts, for the runner's slices).
"""

from __future__ import annotations

import os
import time
from datetime import timedelta

#: per run: this many log lines and spans; events are the rest of the rows
LOGS_PER_RUN, SPANS_PER_RUN = 24, 8


def _columns(cursor, table: str) -> list[tuple[str, bool]]:
    cursor.execute(
        "SELECT column_name, column_default IS NOT NULL OR is_identity = 'YES' "
        "FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position",
        [table],
    )
    return cursor.fetchall()


def _clone(cursor, table: str, template_id, source: str, overrides: dict[str, str]) -> int:
    """INSERT rows into ``table``: every column copied from the template row ``t`` except
    ``overrides`` (SQL over ``source``'s columns); an ``id`` with a default is left to it."""
    names, exprs = [], []
    for name, has_default in _columns(cursor, table):
        if name == "id" and has_default and "id" not in overrides:
            continue
        names.append(f'"{name}"')
        exprs.append(overrides.get(name, f't."{name}"'))
    cursor.execute(
        f'INSERT INTO "{table}" ({", ".join(names)}) SELECT {", ".join(exprs)} '
        f'FROM "{table}" t, {source} WHERE t.id = %s',
        [template_id],
    )
    return cursor.rowcount


def _seed(rows: int) -> dict:
    from django.db import connection
    from django.utils import timezone

    from apps.accounts.models import Organization
    from apps.accounts.services import user_register
    from apps.events.models import Event
    from apps.runs.models import Execution, ExecutionLog, ExecutionStatus, TraceSpan

    suffix = os.urandom(3).hex()
    user, org = user_register(
        email=f"b17-{suffix}@bench.local", password=os.urandom(12).hex(), org_name=f"B17 {suffix}", full_name="B17"
    )
    Organization.objects.filter(pk=org.pk).update(plan="free")
    old = timezone.now() - timedelta(days=60)
    run = Execution.objects.create(
        organization=org, kind="agent_task", run_name="b17", status=ExecutionStatus.COMPLETED, completed_at=old
    )
    log = ExecutionLog.objects.create(
        organization=org, execution=run, seq=1, message="b17 log line " * 8, created_at=old
    )
    span = TraceSpan.objects.create(
        organization=org,
        execution=run,
        trace_id="0" * 32,
        span_id="0" * 16,
        kind="llm",
        name="llm call",
        model="builtin",
        started_at=old,
    )
    event = Event.objects.create(organization=org, type="execution.completed", data={"b17": True})
    runs = max(1, rows // (1 + LOGS_PER_RUN + SPANS_PER_RUN + 1))
    events = max(0, rows - runs * (1 + LOGS_PER_RUN + SPANS_PER_RUN))
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE b17_runs AS SELECT gen_random_uuid() AS rid, g FROM generate_series(1, %s) g", [runs]
        )
        age = "now() - interval '60 days' - g * interval '1 second'"
        counts = {
            "executions": _clone(
                cursor,
                "crews_execution",
                run.pk,
                "b17_runs",
                {"id": "rid", "created_at": age, "completed_at": age, "updated_at": age},
            )
        }
        counts["logs"] = _clone(
            cursor,
            "crews_executionlog",
            log.pk,
            f"b17_runs, generate_series(1, {LOGS_PER_RUN}) s",
            {"execution_id": "rid", "seq": "s", "created_at": age},
        )
        counts["spans"] = _clone(
            cursor,
            "crews_tracespan",
            span.pk,
            f"b17_runs, generate_series(1, {SPANS_PER_RUN}) s",
            {"execution_id": "rid", "span_id": "lpad(s::text, 16, '0')", "started_at": age},
        )
        event_overrides = {"created_at": "now() - interval '60 days'"}
        if not dict(_columns(cursor, "events_event")).get("id"):
            event_overrides["id"] = "(SELECT max(id) FROM events_event) + g"
        counts["events"] = _clone(cursor, "events_event", event.pk, f"generate_series(1, {events}) g", event_overrides)
        cursor.execute("DROP TABLE b17_runs")
        cursor.execute("ANALYZE crews_execution, crews_executionlog, crews_tracespan, events_event")
    counts["total"] = sum(counts.values())
    return {"organization_id": str(org.pk), "counts": counts, "seed_seconds": round(time.monotonic() - started, 1)}


def _prune(organization_id: str) -> dict:
    """The product's prune with the product's pacing settings (environment or defaults)."""
    from django.conf import settings

    from apps.accounts.models import Organization
    from apps.audit.models import AuditEvent
    from apps.retention.services import retention_prune

    pace = {
        "pause": settings.KAI_RETENTION_PAUSE_SECONDS,
        "duty": settings.KAI_RETENTION_DUTY,
        "niceness": settings.KAI_RETENTION_NICE,
    }
    organization = Organization.objects.get(pk=organization_id)
    print("B17-PRUNE-STARTED", flush=True)
    started = time.monotonic()
    run = retention_prune(organization=organization, **pace)
    seconds = time.monotonic() - started
    deleted = sum((run.counts if run else {}).values())
    audit = AuditEvent.objects.filter(organization=organization, action="retention.prune").order_by("-id").first()
    return {
        "deleted": deleted,
        "seconds": round(seconds, 2),
        "rows_per_s": round(deleted / seconds) if seconds else 0,
        "counts": run.counts if run else {},
        "settings": pace,
        "stats": audit.after.get("pace") if audit else None,
    }


def run(ctx) -> dict:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kai_platform.settings")
    import django

    django.setup()
    if ctx.phase == "seed":
        return _seed(int(ctx.rows))
    return _prune(ctx.organization_id)
