"""POST /api/v1/executions/batch: up to 500 runs in one request and one transaction, each item
answered as POST /api/v1/executions answers it alone (an item whose shape the document refuses makes the
whole request a 400); the created runs run on a real worker."""

import json
import uuid

import pytest
from django.core.management import call_command

from apps.audit.models import AuditEvent
from apps.runs.models import Execution, ExecutionEvent
from tests.crews import conftest as crews_conftest
from tests.crews.conftest import make_agent, wait_for
from tests.helpers import assert_envelope

pytestmark = pytest.mark.django_db(transaction=True)
runs_worker = crews_conftest.runs_worker  # the real worker fixture of the run-engine tests

URL = "/api/v1/executions/batch"


def test_each_item_is_answered_as_the_single_route_would_and_the_runs_complete(
    runs_worker, member, client_for, make_member
):
    client = client_for(member)
    agent = make_agent(member, llm="builtin")
    foreign = make_agent(make_member(), llm="builtin")  # another organization's agent: a 400 for this one
    good = {"agent_id": str(agent.pk), "description": "say hi"}
    bad_bodies = [
        {"agent_id": str(foreign.pk), "description": "not ours"},
        {"agent_id": str(uuid.uuid4()), "description": "no such agent"},
    ]
    items = [good, *bad_bodies, {**good, "description": "say bye", "run_name": "second"}]
    response = client.post(URL, {"executions": items}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["created"], body["failed"]) == (2, 2)
    assert [r["index"] for r in body["results"]] == list(range(len(items)))
    for result, item in zip(body["results"], items):
        alone = client.post("/api/v1/executions", item, format="json")
        assert result["status"] == alone.status_code
        if alone.status_code == 202:
            assert set(result["execution"]) == set(alone.json()) and result["execution"]["status"] == "PENDING"
        else:
            expected = alone.json()
            got = result["error"]
            assert (got["code"], got["type"], got["detail"], got["errors"]) == (
                expected["code"],
                expected["type"],
                expected["detail"],
                expected["errors"],
            )
            assert "execution" not in result
    ids = [r["execution"]["execution_id"] for r in body["results"] if r["status"] == 202]
    assert Execution.objects.get(pk=ids[1]).run_name == "second"
    # run by the worker through the state machine, each with its audit row
    wait_for(
        lambda: Execution.objects.filter(pk__in=ids, status="COMPLETED").count() == 2,
        60,
        message="the batch's runs to complete",
    )
    for pk in ids:
        assert list(
            ExecutionEvent.objects.filter(execution_id=pk).order_by("id").values_list("to_status", flat=True)
        ) == ["PENDING", "PREPARING", "RUNNING", "COMPLETED"]
        assert AuditEvent.objects.filter(action="execution.create", object_id=str(pk)).count() == 1


def test_more_than_500_or_none_is_a_400_and_creates_nothing(member, client_for):
    client = client_for(member)
    agent = make_agent(member)
    item = {"agent_id": str(agent.pk), "description": "x"}
    for executions in ([item] * 501, [], "nope"):
        response = client.post(URL, {"executions": executions}, format="json")
        assert response.status_code == 400, response.content
        assert response.json()["code"] and response.json()["errors"][0]["field"] == "executions"
    assert client.post(URL, [item], format="json").status_code == 400
    assert not Execution.objects.exists()


def test_the_batch_is_one_transaction(member, client_for, monkeypatch):
    """A failure that is no item's answer (here: the database refusing the batch's audit rows,
    written after its runs and their history) leaves no run of the batch behind."""
    from apps.runs import services

    client = client_for(member)
    client.raise_request_exception = False
    agent = make_agent(member)

    def failing_audit(entries):
        assert len(entries) == 5
        raise RuntimeError("audit store down")

    monkeypatch.setattr(services, "audit_record_many", failing_audit)
    items = [{"agent_id": str(agent.pk), "description": f"run {i}"} for i in range(5)]
    response = client.post(URL, {"executions": items}, format="json")
    assert response.status_code == 500 and response.json()["code"]
    assert not Execution.objects.exists() and not ExecutionEvent.objects.exists()


def test_viewers_may_not_start_runs_in_batch(make_member, client_for, member):
    viewer = make_member(organization=member.organization, role="viewer")
    agent = make_agent(member)
    response = client_for(viewer).post(
        URL, {"executions": [{"agent_id": str(agent.pk), "description": "x"}]}, format="json"
    )
    assert (
        response.status_code
        == client_for(viewer)
        .post("/api/v1/executions", {"agent_id": str(agent.pk), "description": "x"}, format="json")
        .status_code
        == 403
    )
    assert not Execution.objects.exists()


def test_the_openapi_document_describes_the_batch_route(tmp_path):
    target = tmp_path / "schema.json"
    call_command("spectacular", "--fail-on-warn", "--validate", "--format", "openapi-json", "--file", str(target))
    schema = json.loads(target.read_text())
    operation = schema["paths"]["/api/v1/executions/batch"]["post"]
    request = operation["requestBody"]["content"]["application/json"]["schema"]
    body = schema["components"]["schemas"][request["$ref"].rsplit("/", 1)[1]]
    executions = body["properties"]["executions"]
    assert (executions["minItems"], executions["maxItems"]) == (1, 500)
    assert executions["items"]["$ref"].endswith("/ExecutionCreateRequest")
    answer = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    item = schema["components"]["schemas"][answer]["properties"]["results"]["items"]["$ref"].rsplit("/", 1)[1]
    fields = schema["components"]["schemas"][item]["properties"]
    assert "#/components/schemas/ErrorEnvelope" in json.dumps(fields["error"])
    assert '#/components/schemas/ExecutionCreated"' in json.dumps(fields["execution"])
    assert set(schema["components"]["schemas"][item]["required"]) == {"index", "status"}


def _statements(client, url, body) -> tuple[int, object]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        response = client.post(url, body, format="json")
    return len(ctx.captured_queries), response


#: POST /executions of one agent run: the agent, its provider (budgets), the maintenance switch,
#: then BEGIN, ONE statement for the run + its history row + its audit row, execution.pending, COMMIT
SINGLE_STATEMENTS = 7


def test_statements_do_not_grow_with_the_batch_and_a_single_run_stays_bounded(make_member, client_for, settings):
    # the warm request's reads of the credentials and the maintenance switch serve the whole test: on a
    # busy machine the 500-run batch could otherwise start after their reuse windows and read them again
    settings.KAI_AUTH_CACHE_SECONDS = settings.KAI_MAINTENANCE_CACHE_SECONDS = 3600
    member = make_member(plan="enterprise")
    client = client_for(member)
    agent = make_agent(member, llm="builtin")
    body = {"agent_id": str(agent.pk), "description": "ping"}
    client.post("/api/v1/executions", body, format="json")  # warm: caches of the first request
    single, response = _statements(client, "/api/v1/executions", body)
    assert response.status_code == 202 and single <= SINGLE_STATEMENTS
    counts = {}
    for size in (2, 500):
        counts[size], response = _statements(client, URL, {"executions": [body] * size})
        assert response.status_code == 200 and response.json()["created"] == size
    assert counts[500] == counts[2] <= SINGLE_STATEMENTS + 2, counts  # the same statements, each for every run
    assert Execution.objects.filter(organization=member.organization).count() == 1 + 1 + 2 + 500


def test_each_run_of_a_batch_is_written_as_a_single_post_writes_it(make_member, client_for):
    """Row, history row, audit row and execution.pending per run, in the items' order: the
    events' ids (seq) follow the items; a run's event carries what POST /executions publishes."""
    from apps.events.models import Event

    member = make_member(plan="enterprise")
    client = client_for(member)
    agent = make_agent(member, llm="builtin")
    alone = client.post(
        "/api/v1/executions", {"agent_id": str(agent.pk), "description": "alone"}, format="json"
    ).json()["execution_id"]
    items = [{"agent_id": str(agent.pk), "description": f"run {i}", "priority": i % 10} for i in range(30)]
    body = client.post(URL, {"executions": items}, format="json").json()
    ids = [r["execution"]["execution_id"] for r in body["results"]]
    assert body["created"] == 30 and len(set(ids)) == 30
    events = list(Event.objects.filter(type="execution.pending", execution_id__in=ids).order_by("id"))
    assert [str(e.execution_id) for e in events] == ids  # seq in the items' order
    reference = Event.objects.get(type="execution.pending", execution_id=alone)
    for event, item in zip(events, items):
        assert set(event.data) == set(reference.data) and event.data["reason"] == "created"
        assert (event.organization_id, event.agent_id, event.actor_id, event.component) == (
            reference.organization_id,
            reference.agent_id,
            reference.actor_id,
            reference.component,
        )
        assert event.data["run_name"] == f"{agent.name} - {item['description']}"
    for pk, item in zip(ids, items):
        run = Execution.objects.get(pk=pk)
        assert (run.status, run.priority, run.definition["description"]) == (
            "PENDING",
            item["priority"],
            item["description"],
        )
        assert list(
            ExecutionEvent.objects.filter(execution_id=pk).values_list("from_status", "to_status", "reason")
        ) == [("", "PENDING", "created")]
        audit = AuditEvent.objects.get(action="execution.create", object_id=pk)
        reference_audit = AuditEvent.objects.get(action="execution.create", object_id=alone)
        assert set(audit.after) == set(reference_audit.after) and audit.after["priority"] == item["priority"]
        assert (audit.actor_id, audit.actor_type, audit.model, audit.request_id != "") == (
            reference_audit.actor_id,
            reference_audit.actor_type,
            reference_audit.model,
            True,
        )


def test_an_item_the_document_refuses_makes_the_whole_request_a_400(member, client_for):
    """An item whose shape the document refuses (a missing or unknown key, a value out of range, not an
    object, not exactly one target) is a 400 for the whole batch, naming each such item; nothing is created."""
    client = client_for(member)
    agent = make_agent(member, llm="builtin")
    items = [
        {"agent_id": str(agent.pk), "description": "a"},
        {"agent_id": str(agent.pk)},
        {"agent_id": str(agent.pk), "description": "b", "max_attempts": 99},
        {"agent_id": str(agent.pk), "description": "x", "unknown_key": 1},
        {"description": "no target"},
        "not an object",
    ]
    response = client.post(URL, {"executions": items}, format="json")
    body = assert_envelope(response, 400, code="GENERAL_001")
    fields = {e["field"] for e in body["errors"]}
    assert {"executions[1].description", "executions[2].max_attempts", "executions[3].unknown_key"} <= fields
    assert {"executions[4]", "executions[5]"} <= fields
    assert not any(f.startswith("executions[0]") for f in fields)
    assert not Execution.objects.exists()


def test_an_invalid_item_writes_nothing_of_its_own(member, client_for, make_member):
    """The failed items leave no run, history row, event or audit row; the others are created."""
    from apps.events.models import Event

    client = client_for(member)
    agent = make_agent(member, llm="builtin")
    foreign = make_agent(make_member(), llm="builtin")
    items = [
        {"agent_id": str(agent.pk), "description": "a"},
        {"agent_id": str(foreign.pk), "description": "not ours"},
        {"agent_id": str(uuid.uuid4()), "description": "no such agent"},
    ]
    body = client.post(URL, {"executions": items}, format="json").json()
    assert [r["status"] for r in body["results"]][0] == 202
    assert all(r["status"] >= 400 for r in body["results"][1:])
    created = body["results"][0]["execution"]["execution_id"]
    assert [str(pk) for pk in Execution.objects.values_list("pk", flat=True)] == [created]
    assert ExecutionEvent.objects.count() == 1
    assert Event.objects.filter(type__startswith="execution.").count() == 1
    assert AuditEvent.objects.filter(action="execution.create").count() == 1


def test_items_past_the_quota_are_answered_429_as_alone_and_the_rest_are_created(member, client_for):
    from apps.quotas.models import QuotaOverride

    QuotaOverride.objects.create(organization=member.organization, agent_executions_per_hour=5)
    client = client_for(member)
    agent = make_agent(member, llm="builtin")
    item = {"agent_id": str(agent.pk), "description": "x"}
    client.post("/api/v1/executions", item, format="json")  # 1 of 5 used
    body = client.post(URL, {"executions": [item] * 6}, format="json").json()
    assert [r["status"] for r in body["results"]] == [202] * 4 + [429] * 2
    alone = client.post("/api/v1/executions", item, format="json")
    assert alone.status_code == 429
    for result in body["results"][4:]:
        error, expected = result["error"], alone.json()
        assert (error["code"], error["type"]) == (expected["code"], expected["type"])
        assert {k: v for k, v in error["quota"].items() if k not in ("reset_at", "retry_after")} == {
            k: v for k, v in expected["quota"].items() if k not in ("reset_at", "retry_after")
        }
    assert Execution.objects.count() == 5 and AuditEvent.objects.filter(action="execution.create").count() == 5


def test_a_batch_of_runs_completes_on_a_real_worker(runs_worker, make_member, client_for):
    """50 runs queued over one pipelined producer all reach COMPLETED through the state machine."""
    member = make_member(plan="enterprise")
    client = client_for(member)
    agent = make_agent(member, llm="builtin")
    body = client.post(
        URL, {"executions": [{"agent_id": str(agent.pk), "description": f"n{i}"} for i in range(50)]}, format="json"
    ).json()
    ids = [r["execution"]["execution_id"] for r in body["results"]]
    assert body["created"] == 50
    wait_for(
        lambda: Execution.objects.filter(pk__in=ids, status="COMPLETED").count() == 50,
        120,
        message="the batch's 50 runs to complete",
    )
    for pk in ids[:5]:
        assert list(
            ExecutionEvent.objects.filter(execution_id=pk).order_by("id").values_list("to_status", flat=True)
        ) == ["PENDING", "PREPARING", "RUNNING", "COMPLETED"]
