"""System management (seed 002) and observability: modify/rollback, config, architecture with
a Mermaid diagram, performance, logs, metric rollups and series, runtime/metrics, hub events."""

from __future__ import annotations

import json
import logging
import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from apps.audit.models import AuditEvent
from apps.events.models import Event
from tests.factories import make_tenant_object
from tests.helpers import assert_envelope

pytestmark = pytest.mark.django_db


def _agent(member, **overrides):
    from apps.agents import services

    return services.agent_create(
        organization=member.organization,
        actor=member.user,
        data={"name": "Scout", "role": "Researcher", "goal": "Find", **overrides},
    )


def test_agent_config_change_is_recorded_and_rolls_back_audited(member, owner_client):
    agent = _agent(member)
    response = owner_client.post(
        "/api/v1/system/modify",
        {
            "type": "agent_config",
            "target_id": str(agent.pk),
            "changes": {"role": "Analyst", "goal": "Decide"},
            "description": "promote",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    modification = response.json()
    assert modification["before_state"] == {"role": "Researcher", "goal": "Find"}
    assert modification["after_state"] == {"role": "Analyst", "goal": "Decide"}
    assert modification["applied_by"] == str(member.user.pk) and modification["rollback_available"] is True
    agent.refresh_from_db()
    assert (agent.role, agent.goal) == ("Analyst", "Decide")
    modify_row = AuditEvent.objects.get(organization=member.organization, action="system.modify")
    assert modify_row.model == "agents.Agent" and modify_row.object_id == str(agent.pk)
    assert modify_row.before["role"] == "Researcher" and modify_row.after["role"] == "Analyst"

    rolled = owner_client.post("/api/v1/system/rollback", {"modification_id": modification["id"]}, format="json")
    assert rolled.status_code == 200, rolled.content
    assert rolled.json()["rollback_of"] == modification["id"]
    agent.refresh_from_db()
    assert (agent.role, agent.goal) == ("Researcher", "Find")
    rollback_row = AuditEvent.objects.get(organization=member.organization, action="system.rollback")
    assert rollback_row.before["role"] == "Analyst" and rollback_row.after["role"] == "Researcher"
    history = owner_client.get("/api/v1/system/modifications").json()
    assert history["total"] == 2 and history["items"][1]["rollback_available"] is False
    again = owner_client.post("/api/v1/system/rollback", {"modification_id": modification["id"]}, format="json")
    assert again.status_code == 409
    assert Event.objects.filter(organization=member.organization, type="system.architecture_updated").count() == 2


def test_rollback_refuses_when_the_target_changed_since_unless_forced(member, owner_client):
    agent = _agent(member)
    mod = owner_client.post(
        "/api/v1/system/modify",
        {"type": "agent_config", "target_id": str(agent.pk), "changes": {"goal": "B"}},
        format="json",
    ).json()
    owner_client.patch(f"/api/v1/agents/{agent.pk}", {"goal": "C"}, format="json")
    assert owner_client.post("/api/v1/system/rollback", {}, format="json").status_code == 409
    forced = owner_client.post("/api/v1/system/rollback", {"modification_id": mod["id"], "force": True}, format="json")
    assert forced.status_code == 200
    agent.refresh_from_db()
    assert agent.goal == "Find"


def test_modify_refuses_bad_input_and_writes_nothing(member, owner_client, make_member, client_for):
    agent = _agent(member)
    bad = [
        {"type": "agent_config", "target_id": str(agent.pk), "changes": {"status": "error"}},
        {"type": "agent_config", "changes": {"goal": "x"}},
        {"type": "nope", "changes": {"a": 1}},
        {"type": "system_setting", "changes": {}},
    ]
    for body in bad:
        response = owner_client.post("/api/v1/system/modify", body, format="json")
        assert response.status_code == 400, (body, response.content)
    other = make_member()
    foreign = client_for(other).post(
        "/api/v1/system/modify",
        {"type": "agent_config", "target_id": str(agent.pk), "changes": {"goal": "x"}},
        format="json",
    )
    assert foreign.status_code == 404
    developer = client_for(make_member("developer", organization=member.organization))
    assert (
        developer.post(
            "/api/v1/system/modify", {"type": "system_setting", "changes": {"a": 1}}, format="json"
        ).status_code
        == 403
    )
    assert not AuditEvent.objects.filter(action__startswith="system.").exists()


def test_system_config_put_is_versioned_and_rolls_back(member, owner_client):
    owner_client.put("/api/v1/system/config", {"settings": {"theme": "dark"}}, format="json")
    response = owner_client.put("/api/v1/system/config", {"settings": {"theme": "light", "lang": "de"}}, format="json")
    assert response.status_code == 200 and response.json()["settings"] == {"theme": "light", "lang": "de"}
    assert response.json()["modification"]["before_state"] == {"theme": "dark", "lang": None}
    owner_client.post("/api/v1/system/rollback", {}, format="json")
    assert owner_client.get("/api/v1/system/config").json()["settings"] == {"theme": "dark"}


# --- architecture and its Mermaid text ---------------------------------------------------------

_NODE = r"[A-Za-z][A-Za-z0-9_]*"
_LABEL = r'[^"\[\]{}|<>`\n]*'
MERMAID_LINE = re.compile(
    "|".join(
        [
            rf'^ *subgraph {_NODE}\["{_LABEL}"\]$',
            r"^ *end$",
            rf'^ *(?P<def>{_NODE})(\["{_LABEL}"\]|\(\["{_LABEL}"\]\)|\[\("{_LABEL}"\)\])(:::(active|inactive|error))?$',
            rf"^ *(?P<src>{_NODE}) (-->|==>|-\.->)(\|[a-z_]+\|)? (?P<dst>{_NODE})$",
            r"^ *classDef [a-z]+ [a-z\-]+:[#\w]+(,[a-z\-]+:[#\w]+)*$",
        ]
    )
)


def check_mermaid(text: str) -> None:
    """A grammar check of the flowchart subset the diagram uses: header, node definitions with
    quoted labels, edges between defined nodes, balanced subgraphs, class definitions."""
    lines = text.strip("\n").split("\n")
    assert re.match(r"^flowchart (LR|TD|TB|RL|BT)$", lines[0]), lines[0]
    defined, depth = set(), 0
    for line in lines[1:]:
        match = MERMAID_LINE.match(line)
        assert match, f"not valid flowchart syntax: {line!r}"
        if line.strip().startswith("subgraph "):
            depth += 1
            defined.add(line.split()[1].split("[")[0])
        elif line.strip() == "end":
            depth -= 1
            assert depth >= 0
        elif match.group("def"):
            defined.add(match.group("def"))
        elif match.group("src"):
            assert {match.group("src"), match.group("dst")} <= defined, f"edge to an undefined node: {line}"
    assert depth == 0


def test_architecture_lists_nodes_connections_and_a_mermaid_diagram_that_parses(member, owner_client):
    from apps.crews import services as crew_services

    a = _agent(member, name='Quote "me" [x]')
    b = _agent(member, name="Writer")
    crew_services.orchestration_create(
        organization=member.organization,
        actor=member.user,
        data={"name": "Pipeline", "pattern": "sequential", "agent_ids": [str(a.pk), str(b.pk)]},
    )
    from apps.agents.models import Provider

    make_tenant_object(Provider, member.organization, member.user)
    body = owner_client.get("/api/v1/system/architecture").json()
    assert {n["type"] for n in body["agents"]} >= {"agent", "external_api"}
    assert {n["agent_number"] for n in body["agents"] if n["type"] == "agent"} == {a.agent_number, b.agent_number}
    assert any(
        c["source"] == str(a.pk) and c["target"] == str(b.pk) and c["type"] == "data_flow" for c in body["connections"]
    )
    assert any(w["kind"] == "orchestration" and w["name"] == "Pipeline" for w in body["workflows"])
    check_mermaid(body["mermaid_diagram"])
    assert "-->|data_flow|" in body["mermaid_diagram"] and "#quot;me#quot;" in body["mermaid_diagram"]


def test_the_mermaid_grammar_check_rejects_broken_text():
    for broken in (
        "graph\nA-->B",
        'flowchart LR\n  a["x"]\n  a --> b',
        'flowchart LR\n  subgraph s["x"]',
        'flowchart LR\n  a["say "hi""]',
    ):
        with pytest.raises(AssertionError):
            check_mermaid(broken)


# --- performance, logs, metrics ----------------------------------------------------------------


def test_performance_reports_latency_throughput_errors_queues_and_workers(member, owner_client):
    for _ in range(5):
        owner_client.get("/api/v1/agents")
    owner_client.get("/api/v1/agents/00000000-0000-0000-0000-000000000000")  # 404: a client error, not a 5xx
    body = owner_client.get("/api/v1/system/performance", {"window": 5}).json()
    requests = body["requests"]
    assert requests["requests"] == 6 and requests["client_errors"] == 1 and requests["errors"] == 0
    assert requests["latency_ms"]["samples"] == 6 and 0 < requests["latency_ms"]["p50"] <= requests["latency_ms"]["p99"]
    assert requests["throughput_rpm"] > 0
    from django.conf import settings

    assert settings.CELERY_TASK_DEFAULT_QUEUE in body["queues"]
    assert set(body["workers"]) >= {"count", "workers"} and "cpu_usage" in body["resources"]
    assert body["runs"]["failure_rate"] == 0.0
    assert owner_client.get("/api/v1/system/performance", {"window": 0}).status_code == 400


def test_logs_of_the_organization_are_kept_scrubbed_and_filtered(member, owner_client, make_member, client_for):
    from kai_platform.logging import log_context

    logger = logging.getLogger("kai.test.system")
    with log_context(organization=member.organization.pk, execution="exec-1"):
        logger.info("run step done with password=hunter2222 and key kai_abcd1234_SECRETSECRETSECRET")
        logger.warning("slow provider")
    other = make_member()
    with log_context(organization=other.organization.pk):
        logger.info("someone else's line")
    body = owner_client.get("/api/v1/system/logs", {"logger": "kai.test"}).json()
    messages = [item["message"] for item in body["items"]]
    assert messages[0] == "slow provider" and len(messages) == 2
    assert "hunter2222" not in messages[1] and "SECRETSECRET" not in messages[1] and "[redacted]" in messages[1]
    assert body["items"][1]["execution_id"] == "exec-1"
    assert body["items"][1]["organization"] == str(member.organization.pk)
    warnings = owner_client.get("/api/v1/system/logs", {"logger": "kai.test", "level": "warning"}).json()
    assert [i["message"] for i in warnings["items"]] == ["slow provider"]
    user = client_for(make_member("user", organization=member.organization))
    assert user.get("/api/v1/system/logs").status_code == 403


def test_request_log_lines_carry_request_id_organization_and_user(member, owner_client):
    from kai_platform.logging import JsonFormatter, RequestContextFilter

    records = []

    class Capture(logging.Handler):
        def emit(self, record):
            records.append(JsonFormatter().format(record))

    handler = Capture()
    handler.addFilter(RequestContextFilter())
    logging.getLogger("django.request").addHandler(handler)
    try:
        response = owner_client.get(
            "/api/v1/agents/00000000-0000-0000-0000-000000000000", HTTP_X_REQUEST_ID="req-observe-1"
        )
    finally:
        logging.getLogger("django.request").removeHandler(handler)
    assert response.status_code == 404
    import orjson

    lines = [orjson.loads(r) for r in records]
    assert any(
        line["request_id"] == "req-observe-1"
        and line["organization"] == str(member.organization.pk)
        and line["user"] == str(member.user.pk)
        for line in lines
    ), lines


def test_rollup_fills_series_that_the_metrics_endpoint_serves(member, owner_client, make_member, client_for):
    import time

    from apps.system import tasks
    from apps.system.models import MetricRollup
    from kai_platform import observability

    minute = observability.minute_of(time.time()) - 60
    for latency in (10.0, 20.0, 30.0, 400.0):
        observability_record_at(member.organization.pk, minute, latency, 200)
    observability_record_at(member.organization.pk, minute, 5.0, 503)
    tasks._save(tasks.rollup_minute(minute))
    tasks._save(tasks.rollup_minute(minute))  # idempotent: recomputing the same minute updates, never adds
    rows = MetricRollup.objects.filter(organization=member.organization)
    assert rows.get(name="api_requests").value == 5 and rows.get(name="api_errors").value == 1
    assert rows.get(name="api_latency_p95_ms").value == 400.0
    series = owner_client.get("/api/v1/metrics", {"metric_name": "api_requests", "period": "1h"}).json()
    assert series["metric_name"] == "api_requests" and series["interval_seconds"] == 60
    assert series["series"][0]["total"] == 5
    catalog = owner_client.get("/api/v1/metrics").json()["metrics"]
    assert {"api_requests", "llm_tokens_in", "queue_depth"} <= {m["name"] for m in catalog}
    assert owner_client.get("/api/v1/metrics", {"metric_name": "bogus"}).status_code == 400
    assert owner_client.get("/api/v1/metrics", {"metric_name": "api_requests", "period": "2y"}).status_code == 400
    stranger = client_for(make_member()).get("/api/v1/metrics", {"metric_name": "api_requests"}).json()
    assert stranger["series"] == []
    assert tasks.rollup_metrics()["written"] >= 1


def observability_record_at(org_id, minute, latency_ms, status_code):
    """``record_request`` for a given minute (the test cannot wait for the clock)."""
    from unittest import mock

    from kai_platform import observability

    with mock.patch.object(observability.time, "time", return_value=minute + 1):
        observability.record_request(str(org_id), latency_ms, status_code)


def test_beat_publishes_metrics_status_and_threshold_alerts(member, owner_client, settings):
    from apps.system import tasks

    settings.KAI_ALERT_MIN_REQUESTS = 1
    settings.KAI_ALERT_P95_MS = 0.001  # any request is "slow"
    settings.KAI_ALERT_CPU_PERCENT = settings.KAI_ALERT_MEMORY_PERCENT = 1000.0  # the shared test host is busy
    owner_client.get("/api/v1/agents")
    counts = tasks.publish_system_status()
    assert counts["organizations"] >= 1
    events = Event.objects.filter(organization=member.organization)
    update = events.get(type="metrics.update")
    assert update.data["requests"]["requests"] >= 1
    assert events.get(type="system.status").data["status"] in {"degraded", "unhealthy"}
    alert = events.get(type="system.performance_alert")
    assert alert.data["alert_type"] == "slow_response" and alert.data["severity"] in {"warning", "critical"}
    tasks.publish_system_status()  # cooldown: no second alert, no repeated unchanged status
    assert events.filter(type="system.performance_alert").count() == 1
    assert events.filter(type="system.status").count() == 1
    assert events.filter(type="metrics.update").count() == 2


def test_runtime_metrics_is_the_organizations_prometheus_text(member, owner_client):
    _agent(member)
    _llm_span(member, provider="openai", model="gpt-4o", tokens_in=12, tokens_out=30)
    response = owner_client.get("/api/v1/runtime/metrics")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.content.decode())}
    assert {"kai_org_runs", "kai_org_agents", "kai_org_llm_tokens", "kai_queue_depth", "kai_workers_alive"} <= set(
        families
    )
    tokens = {(s.labels["provider"], s.labels["direction"]): s.value for s in families["kai_org_llm_tokens"].samples}
    assert tokens[("openai", "in")] == 12 and tokens[("openai", "out")] == 30
    as_json = owner_client.get("/api/v1/runtime/metrics", {"format": "json"}).json()
    assert as_json["llm"][0]["provider"] == "openai"
    assert owner_client.get("/api/v1/runtime/metrics", {"format": "prometheus"})["Content-Type"].startswith(
        "text/plain"
    )
    for unknown in ("", "xml"):  # not a renderer's format: a 400 in the JSON envelope, not the text
        refused = assert_envelope(owner_client.get("/api/v1/runtime/metrics", {"format": unknown}), 400)
        assert refused["errors"][0]["field"] == "format" and "json" in refused["errors"][0]["message"]


def _llm_span(member, *, provider, model, tokens_in, tokens_out):
    from django.utils import timezone

    from apps.runs.models import Execution, TraceSpan

    execution = make_tenant_object(Execution, member.organization, member.user)
    return TraceSpan.objects.create(
        organization=member.organization,
        execution=execution,
        trace_id="t" * 32,
        span_id=f"{TraceSpan.objects.count():016d}",
        kind="llm",
        name=model,
        model=model,
        started_at=timezone.now(),
        ended_at=timezone.now(),
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        cost="0.001",
        attributes={"provider": provider},
    )


def test_platform_metrics_cover_every_family_and_parse(member, owner_client, api_client, settings):
    settings.KAI_METRICS_TOKEN = ""
    _llm_span(member, provider="anthropic", model="claude", tokens_in=5, tokens_out=7)
    owner_client.get("/api/v1/agents")
    response = api_client.get("/metrics")
    families = {f.name: f for f in text_string_to_metric_families(response.content.decode())}
    assert {
        "kai_http_request_duration_seconds",
        "kai_runs",
        "kai_queue_depth",
        "kai_workers_alive",
        "kai_worker_heartbeat_age_seconds",
        "kai_socket_connections",
        "kai_llm_tokens",
        "kai_llm_cost_usd",
    } <= set(families)
    assert any(s.labels.get("provider") == "anthropic" for s in families["kai_llm_tokens"].samples)
    assert any(
        s.labels.get("route", "").startswith("api/v1/") and s.name.endswith("_bucket")
        for s in families["kai_http_request_duration_seconds"].samples
    )
    assert {s.labels["status"] for s in families["kai_runs"].samples} >= {"PENDING"}


def test_system_health_adds_seed_002_fields(member, owner_client):
    _agent(member)
    response = owner_client.get("/api/v1/system/health")
    body = response.json()
    assert {"status", "checks", "uptime", "version", "agents", "resources", "external_services"} <= set(body)
    assert body["agents"]["total"] == 1 and "cpu_usage" in body["resources"]


def test_system_changes_need_a_step_up_grant_when_the_organization_requires_it(member, owner_client):
    """Seed 002 lists system modifications among the sensitive operations: with ``require_step_up``
    on, config/modify/rollback answer 403 AUTH_002 until the session re-checks its password — so
    step-up cannot be switched off through ``PUT system/config`` without a grant either."""
    from apps.accounts.services import organization_settings_update
    from tests.factories import PASSWORD

    organization_settings_update(organization=member.organization, actor=member.user, changes={"require_step_up": True})
    off = {"settings": {"require_step_up": False}}
    assert_envelope(owner_client.put("/api/v1/system/config", off, format="json"), 403, "AUTH_002")
    assert_envelope(
        owner_client.post("/api/v1/system/modify", {"type": "system_setting", "changes": {"x": 1}}, format="json"),
        403,
        "AUTH_002",
    )
    assert_envelope(owner_client.post("/api/v1/system/rollback", {}, format="json"), 403, "AUTH_002")
    assert owner_client.get("/api/v1/system/config").status_code == 200  # reading stays open
    member.organization.refresh_from_db()
    assert member.organization.settings["require_step_up"] is True

    granted = owner_client.post("/api/v1/auth/step-up/password", {"password": PASSWORD}, format="json")
    assert granted.status_code == 200, granted.content
    assert owner_client.put("/api/v1/system/config", off, format="json").status_code == 200
    member.organization.refresh_from_db()
    assert member.organization.settings["require_step_up"] is False


def test_system_health_reports_a_flapping_child_of_the_make_run_supervisor(member, owner_client, tmp_path, monkeypatch):
    state = tmp_path / "supervisor.json"
    state.write_text(
        json.dumps(
            {
                "updated_at": 1.0,
                "children": {
                    "web": {"status": "running", "pid": 11, "restarts": 0, "deaths_last_minute": 0},
                    "beat": {
                        "status": "flapping",
                        "pid": 12,
                        "restarts": 6,
                        "deaths_last_minute": 6,
                        "last_exit_code": 1,
                    },
                },
            }
        )
    )
    monkeypatch.setenv("KAI_SUPERVISOR_STATE", str(state))
    body = owner_client.get("/api/v1/system/health").json()
    assert body["processes"]["status"] == "degraded" and body["processes"]["flapping"] == ["beat"]
    assert body["processes"]["children"]["beat"]["restarts"] == 6
    assert body["status"] in ("degraded", "unhealthy")  # unhealthy only when a readiness check is down
    monkeypatch.delenv("KAI_SUPERVISOR_STATE")
    assert owner_client.get("/api/v1/system/health").json()["processes"] is None
