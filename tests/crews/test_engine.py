"""The run engine's rules, exercised in-process (the runner called directly; no Celery)."""

from __future__ import annotations

import ast
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.utils import timezone
from django_redis import get_redis_connection

from apps.events.models import Event
from apps.runs import lifecycle, reaper, services
from apps.runs.inflight import registry as registry_inflight
from apps.runs.models import Execution, ExecutionEvent, ExecutionKind, TraceSpan
from tests.crews.conftest import make_agent
from tests.helpers import parse_source

pytestmark = pytest.mark.django_db(transaction=True)


def _run(member, agent, description="Say hello", **fields):
    execution = services.execution_create(
        organization=member.organization,
        actor=member.user,
        kind=ExecutionKind.AGENT_TASK,
        agent=agent,
        definition={"description": description},
        enqueue=False,
        **fields,
    )
    outcome = lifecycle.run(execution.pk, worker="test-worker")
    execution.refresh_from_db()
    return outcome, execution


# --- the transition service --------------------------------------------------------------------


def test_transitions_are_conditional_and_leave_an_event_and_a_published_event(member):
    agent = make_agent(member)
    execution = services.execution_create(
        organization=member.organization, actor=member.user, kind=ExecutionKind.AGENT_TASK, agent=agent, enqueue=False
    )
    assert services.execution_transition(execution_id=execution.pk, to="COMPLETED") is False  # PENDING ↛ COMPLETED
    assert services.execution_transition(execution_id=execution.pk, to="PREPARING", reason="claimed", worker="w")
    assert services.execution_transition(execution_id=execution.pk, to="PREPARING") is False  # claimed once only
    assert services.execution_transition(execution_id=execution.pk, to="RUNNING")
    assert services.execution_transition(execution_id=execution.pk, to="COMPLETED", result="done")
    assert services.execution_transition(execution_id=execution.pk, to="FAILED") is False  # terminal stays
    execution.refresh_from_db()
    assert execution.status == "COMPLETED" and execution.result == "done" and execution.worker == "w"
    assert execution.started_at and execution.completed_at >= execution.started_at
    events = list(ExecutionEvent.objects.filter(execution=execution).values_list("from_status", "to_status"))
    assert events == [("", "PENDING"), ("PENDING", "PREPARING"), ("PREPARING", "RUNNING"), ("RUNNING", "COMPLETED")]
    published = list(Event.objects.filter(execution_id=execution.pk).order_by("id").values_list("type", "data"))
    assert [t for t, _ in published] == [
        "execution.pending",
        "execution.preparing",
        "execution.running",
        "execution.completed",
    ]
    data = published[-1][1]
    assert data["from"] == "RUNNING" and data["to"] == "COMPLETED" and data["agent_id"] == str(agent.pk)
    with pytest.raises(ValueError):
        services.execution_transition(execution_id=execution.pk, to="FAILED", status="FAILED")


def test_only_the_transition_service_writes_execution_status():
    """House style 4: no code but ``execution_transition`` assigns or updates ``status`` of an execution."""
    root = Path(__file__).resolve().parents[2] / "apps"
    offenders = []
    for path in root.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        tree = parse_source(path.read_text(), str(path))
        source_mentions_execution = "Execution" in path.read_text() or "execution" in path.read_text()
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if (
                        isinstance(target, ast.Attribute)
                        and target.attr == "status"
                        and isinstance(target.value, ast.Name)
                        and "execution" in target.value.id.lower()
                    ):
                        offenders.append(f"{path}:{node.lineno}")
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("update", "create", "bulk_update")
                and source_mentions_execution
            ):
                keywords = {k.arg for k in node.keywords}
                receiver = ast.unparse(node.func.value)
                if "status" in keywords and "Execution" in receiver and "ExecutionEvent" not in receiver:
                    offenders.append(f"{path}:{node.lineno}")
    allowed = {str(root / "runs" / "transitions.py")}  # execution_transition's module
    assert [o for o in offenders if o.rsplit(":", 1)[0] not in allowed] == []
    text = (root / "runs" / "transitions.py").read_text()
    assert text.count('"status": to') == 1  # the one conditional UPDATE


def test_a_claim_is_one_statement_recording_and_publishing_both_steps_in_order(member):
    agent = make_agent(member)
    execution = services.execution_create(
        organization=member.organization, actor=member.user, kind=ExecutionKind.AGENT_TASK, agent=agent, enqueue=False
    )
    outcome, running = services.execution_claim(
        execution_id=execution.pk, worker="w@h", attempts=1, cap=(member.organization.pk, 5)
    )
    assert (outcome, running) == ("claimed", 0)
    execution.refresh_from_db()
    assert execution.status == "RUNNING" and execution.worker == "w@h" and execution.attempts == 1
    assert execution.started_at and execution.heartbeat_at
    history = list(
        ExecutionEvent.objects.filter(execution=execution)
        .order_by("id")
        .values_list("from_status", "to_status", "reason")
    )
    assert history == [
        ("", "PENDING", "created"),
        ("PENDING", "PREPARING", "claimed by w@h"),
        ("PREPARING", "RUNNING", "started"),
    ]
    published = list(Event.objects.filter(execution_id=execution.pk).order_by("id").values_list("type", "data"))
    assert [t for t, _ in published] == ["execution.pending", "execution.preparing", "execution.running"]
    assert published[1][1] == {
        "execution_id": str(execution.pk),
        "kind": "agent_task",
        "from": "PENDING",
        "to": "PREPARING",
        "status": "PREPARING",
        "reason": "claimed by w@h",
        "agent_id": str(agent.pk),
    }
    assert published[2][1]["from"] == "PREPARING" and published[2][1]["to"] == "RUNNING"
    # a second claim of the same run loses cleanly and publishes nothing
    assert services.execution_claim(execution_id=execution.pk, worker="x", attempts=1)[0] == "lost"
    assert Event.objects.filter(execution_id=execution.pk).count() == 3


def test_a_claim_commits_in_its_round_trip_unless_a_listener_wants_its_events(member, monkeypatch):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from apps.events import services as events

    agent = make_agent(member)
    first, second = (
        services.execution_create(
            organization=member.organization,
            actor=member.user,
            kind=ExecutionKind.AGENT_TASK,
            agent=agent,
            enqueue=False,
        )
        for _ in range(2)
    )
    seen = []

    def listener(event):
        seen.append((event.type, connection.in_atomic_block))

    # only listeners of other events: one round trip, no BEGIN/COMMIT of the client's
    monkeypatch.setattr(events, "_PUBLISH_LISTENERS", [(listener, frozenset({"execution.completed"}))])
    with CaptureQueriesContext(connection) as queries:
        assert (
            services.execution_claim(execution_id=first.pk, worker="w", attempts=1, cap=(member.organization.pk, 10))[0]
            == "claimed"
        )
    assert len(queries.captured_queries) == 1 and seen == []
    # a listener of execution.running: it runs inside the claim's transaction
    events.add_publish_listener(listener, types=["execution.running"])
    assert services.execution_claim(execution_id=second.pk, worker="w", attempts=1)[0] == "claimed"
    assert seen == [("execution.running", True)]
    # and one registered without types is called for every event, inside the transaction too
    events.add_publish_listener(listener)
    assert services.execution_transition(execution_id=second.pk, to="COMPLETED")
    assert seen[-1] == ("execution.completed", True)


def test_a_claim_over_the_cap_leaves_the_run_pending_and_untouched(member):
    agent = make_agent(member)
    first, second = (
        services.execution_create(
            organization=member.organization,
            actor=member.user,
            kind=ExecutionKind.AGENT_TASK,
            agent=agent,
            enqueue=False,
        )
        for _ in range(2)
    )
    cap = (member.organization.pk, 1)
    assert services.execution_claim(execution_id=first.pk, worker="w", attempts=1, cap=cap) == ("claimed", 0)
    assert services.execution_claim(execution_id=second.pk, worker="w", attempts=1, cap=cap) == ("over_cap", 1)
    second.refresh_from_db()
    assert second.status == "PENDING" and second.worker == "" and second.attempts == 0
    assert list(Event.objects.filter(execution_id=second.pk).values_list("type", flat=True)) == ["execution.pending"]
    # once the first ended there is room again
    services.execution_transition(execution_id=first.pk, to="COMPLETED")
    assert services.execution_claim(execution_id=second.pk, worker="w", attempts=1, cap=cap)[0] == "claimed"


def test_a_run_whose_cancel_was_requested_is_never_claimed(member):
    agent = make_agent(member)
    execution = services.execution_create(
        organization=member.organization, actor=member.user, kind=ExecutionKind.AGENT_TASK, agent=agent, enqueue=False
    )
    Execution.objects.filter(pk=execution.pk).update(cancel_requested=True)
    assert services.execution_claim(execution_id=execution.pk, worker="w", attempts=1)[0] == "lost"
    assert lifecycle.run(execution.pk, worker="w") == "cancelled"
    execution.refresh_from_db()
    assert execution.status == "CANCELLED" and execution.started_at is None


def test_a_run_ends_with_its_last_batch_in_the_same_transaction(member):
    """Logs, spans and the end commit together; the shared counters (usage rollup, provider usage)
    are written after, in statements of their own."""
    from apps.agents.models import ProviderUsage
    from apps.runs.models import ExecutionLog, UsageRollup

    agent = make_agent(member, llm="builtin")
    outcome, execution = _run(member, agent)
    assert outcome == "completed"
    logs = list(ExecutionLog.objects.filter(execution=execution).order_by("seq").values_list("seq", "message"))
    assert [seq for seq, _ in logs] == list(range(1, len(logs) + 1)) and logs[-1][1] == "completed"
    assert execution.log_seq == len(logs) and execution.tokens_out > 0
    assert TraceSpan.objects.filter(execution=execution, kind="llm").count() == 1
    rollup = UsageRollup.objects.get(organization=member.organization, agent_id=agent.pk)
    assert rollup.executions == 1 and rollup.llm_calls == 1 and rollup.tokens_out == execution.tokens_out
    usage = ProviderUsage.objects.get(organization=member.organization)
    assert usage.calls == 1 and usage.output_tokens == execution.tokens_out


# --- the runner --------------------------------------------------------------------------------


def test_a_run_is_idempotent_and_a_second_delivery_is_a_no_op(member):
    agent = make_agent(member)
    outcome, execution = _run(member, agent)
    assert outcome == "completed" and execution.status == "COMPLETED"
    assert lifecycle.run(execution.pk, worker="again") == "skipped (COMPLETED)"
    assert lifecycle.run("00000000-0000-0000-0000-000000000000", worker="x") == "missing"


def test_tools_are_called_when_the_model_asks_and_traced(member):
    agent = make_agent(member, tools=["calculator"])
    outcome, execution = _run(member, agent, description='Compute\n/tool calculator {"expression": "6*7"}')
    assert execution.status == "COMPLETED", execution.error
    assert "42" in execution.result
    tool = TraceSpan.objects.get(execution=execution, kind="tool")
    assert tool.name == "calculator" and tool.status == "ok"
    assert TraceSpan.objects.filter(execution=execution, kind="llm").count() == 2


def test_provider_budget_stops_the_run_before_the_call(member):
    from apps.agents.models import Provider

    builtin = Provider.objects.for_org(member.organization).get(provider_type="builtin")
    Provider.objects.filter(pk=builtin.pk).update(budget_limit=0)
    agent = make_agent(member, llm="builtin")
    outcome, execution = _run(member, agent)
    assert execution.status == "FAILED"
    assert execution.error.startswith("budget exceeded: provider") and "monthly budget" in execution.error
    assert execution.tokens_out == 0 and not TraceSpan.objects.filter(execution=execution, kind="llm").exists()


def test_agent_and_organization_budgets(member):
    agent = make_agent(member, config={"budget_limit_usd": 0})
    _, execution = _run(member, agent)
    assert execution.status == "FAILED" and "budget exceeded: agent" in execution.error
    other = make_agent(member, name="Other")
    member.organization.settings = {"monthly_budget_usd": 0}
    member.organization.save()
    _, execution = _run(member, other)
    assert execution.status == "FAILED" and "budget exceeded: the organization" in execution.error


def test_provider_errors_open_its_circuit_breaker(member, monkeypatch, settings):
    from apps.runs import llm as llm_layer
    from kai_platform.llm import LLMConnectionError
    from kai_platform.llm.builtin import BuiltinClient

    settings.KAI_CIRCUIT_FAILURES = 2

    def broken(self, messages, tools=None, params=None):
        raise LLMConnectionError("connection refused", provider="builtin")
        yield  # pragma: no cover

    monkeypatch.setattr(BuiltinClient, "stream", broken)
    agent = make_agent(member)
    for _ in range(2):
        _, execution = _run(member, agent)
        assert execution.status == "FAILED" and "failed (connection): connection refused" in execution.error
    _, execution = _run(member, agent)
    assert execution.status == "FAILED" and "circuit breaker" in execution.error and "is open" in execution.error
    resolved = llm_layer.resolve_model(organization=member.organization, model_name="")
    assert llm_layer.breaker_state(resolved.provider_key)["state"] == "open"
    llm_layer.breaker_success(resolved.provider_key)


def test_a_model_without_provider_runs_on_builtin_with_a_log_line(member):
    agent = make_agent(member, llm="gpt-4")
    _, execution = _run(member, agent)
    assert execution.status == "COMPLETED"
    assert execution.logs.filter(level="warning", message__contains="'gpt-4' has no configured provider").exists()


def test_hierarchical_crew_plans_and_reviews(member):
    from tests.crews.conftest import make_crew

    crew = make_crew(member, process="hierarchical")
    execution = services.execution_create(
        organization=member.organization,
        actor=member.user,
        kind=ExecutionKind.CREW,
        crew=crew,
        definition={
            "name": crew.name,
            "agents_yaml": crew.agents_yaml,
            "tasks_yaml": crew.tasks_yaml,
            "process": "hierarchical",
        },
        inputs={"topic": "AI"},
        enqueue=False,
    )
    assert lifecycle.run(execution.pk, worker="t") == "completed"
    names = list(TraceSpan.objects.filter(execution=execution, kind="task").values_list("name", flat=True))
    assert names[1] == "plan" and names[-1] == "review" and len(names) == 6


# --- the reaper --------------------------------------------------------------------------------


def _stale(member, agent, **fields):
    execution = services.execution_create(
        organization=member.organization,
        actor=member.user,
        kind=ExecutionKind.AGENT_TASK,
        agent=agent,
        enqueue=False,
        **fields,
    )
    services.execution_transition(execution_id=execution.pk, to="PREPARING", worker="gone@host", attempts=1)
    services.execution_transition(execution_id=execution.pk, to="RUNNING")
    Execution.objects.filter(pk=execution.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=61))
    return execution


def test_reaper_fails_runs_whose_heartbeat_is_stale_and_requeues_per_policy(member, settings):
    agent = make_agent(member)
    lost = _stale(member, agent)
    retried = _stale(member, agent, max_attempts=2)
    cancelled = _stale(member, agent)
    Execution.objects.filter(pk=cancelled.pk).update(cancel_requested=True)
    # 30 s without a heartbeat: not yet stale while its worker's liveness key is there...
    fresh = _stale(member, agent)
    Execution.objects.filter(pk=fresh.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=30), worker="alive@host (pid 7)"
    )
    get_redis_connection("default").set(f"{django_settings.KAI_REDIS_PREFIX}:runs:alive:alive@host (pid 7)", 1, ex=60)
    # ... lost at once when its worker's key is gone (a killed worker is not waited for)
    early = _stale(member, agent)
    Execution.objects.filter(pk=early.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=20))
    counts = reaper.reap_stale()
    assert counts == {"failed": 2, "requeued": 1, "cancelled": 1}
    assert Execution.objects.get(pk=early.pk).error.startswith("worker lost: no heartbeat from gone@host for 2")
    lost.refresh_from_db()
    assert lost.status == "FAILED" and lost.error.startswith("worker lost: no heartbeat from gone@host for 6")
    retried.refresh_from_db()
    assert (
        retried.status == "PENDING"
        and retried.worker == ""
        and "requeued (attempt 2 of 2)" in (retried.events.order_by("-id").first().reason)
    )
    assert Execution.objects.get(pk=cancelled.pk).status == "CANCELLED"
    assert Execution.objects.get(pk=fresh.pk).status == "RUNNING"
    assert reaper.reap_stale() == {"failed": 0, "requeued": 0, "cancelled": 0}


def test_the_heartbeat_stamps_running_executions_and_hands_them_cancel_requests(member):
    agent = make_agent(member)
    execution = _stale(member, agent)
    handle = registry_inflight.add(execution.pk)
    try:
        Execution.objects.filter(pk=execution.pk).update(cancel_requested=True)
        registry_inflight.beat()
        execution.refresh_from_db()
        assert (timezone.now() - execution.heartbeat_at).total_seconds() < 5
        assert handle.cancel_event.is_set() and handle.cancel_reason == "cancelled by user"
    finally:
        registry_inflight.remove(handle)
