"""The move of the run engine's models from apps.crews to apps.runs keeps existing data: a database
at the last schema before the move, with runs in it, migrates forward and reads back through the
new models (same tables, same rows, content types relabelled)."""

import uuid
from datetime import date
from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE = [("crews", "0003_execution_waiting_for_approval"), ("runs", None)]


def _migrate(targets):
    from django.contrib.contenttypes.models import ContentType

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    executor.loader.build_graph()
    ContentType.objects.clear_cache()  # the rows moved under this process, as under a deploy's restart
    return executor.loader.project_state([t for t in targets if t[1] is not None]).apps


@pytest.mark.django_db(transaction=True)
def test_rows_written_before_the_move_are_read_through_apps_runs(member):
    from django.contrib.contenttypes.models import ContentType

    latest = MigrationExecutor(connection).loader.graph.leaf_nodes()
    old = _migrate(BEFORE)
    assert not any(app == "runs" for app, _ in MigrationExecutor(connection).loader.applied_migrations)
    OldExecution = old.get_model("crews", "Execution")
    now = timezone.now()
    # what the app had written under the old labels: a content type and its rows
    ContentType.objects.filter(app_label__in=("crews", "runs"), model="execution").delete()
    old_type = ContentType.objects.create(app_label="crews", model="execution")
    run = OldExecution.objects.create(
        id=uuid.uuid4(),
        organization_id=member.organization.pk,
        kind="crew",
        status="COMPLETED",
        run_name="before",
        inputs={"topic": "x"},
        definition={"process": "sequential"},
        result={"output": "done"},
        trace_id="a" * 32,
        tokens_in=3,
        tokens_out=4,
        cost=Decimal("0.5"),
        created_at=now,
        updated_at=now,
        checkpoint={"outputs": {}},
    )
    old.get_model("crews", "ExecutionEvent").objects.create(
        organization_id=member.organization.pk,
        execution_id=run.pk,
        from_status="",
        to_status="PENDING",
        reason="created",
        at=now,
    )
    old.get_model("crews", "ExecutionLog").objects.create(
        organization_id=member.organization.pk, execution_id=run.pk, seq=1, message="hello", created_at=now
    )
    old.get_model("crews", "TraceSpan").objects.create(
        organization_id=member.organization.pk,
        execution_id=run.pk,
        trace_id="a" * 32,
        span_id="b" * 16,
        kind="llm",
        name="builtin",
        started_at=now,
    )
    old.get_model("crews", "UsageRollup").objects.create(
        id=uuid.uuid4(),
        organization_id=member.organization.pk,
        day=date.today(),
        model="builtin",
        executions=1,
        created_at=now,
        updated_at=now,
    )

    _migrate(latest)

    from apps.runs.models import Execution, ExecutionEvent, ExecutionLog, TraceSpan, UsageRollup

    moved = Execution.objects.get(pk=run.pk)
    assert (moved.run_name, moved.status, moved.result, moved.cost, moved.total_tokens) == (
        "before",
        "COMPLETED",
        {"output": "done"},
        Decimal("0.5"),
        7,
    )
    assert list(ExecutionEvent.objects.filter(execution=moved).values_list("to_status", flat=True)) == ["PENDING"]
    assert ExecutionLog.objects.get(execution=moved).message == "hello"
    assert TraceSpan.objects.get(execution=moved).span_id == "b" * 16
    assert UsageRollup.objects.for_org(member.organization).get().model == "builtin"
    assert Execution._meta.db_table == "crews_execution"
    old_type.refresh_from_db()
    assert (old_type.app_label, old_type.model) == ("runs", "execution")  # permissions and admin logs follow
    assert ContentType.objects.get_for_model(Execution).pk == old_type.pk
