"""POST /api/v1/executions/batch: up to 500 runs in one request and one transaction, each item
answered as POST /api/v1/executions answers it alone; the created runs run on a real worker."""
import json

import pytest
from django.core.management import call_command

from apps.audit.models import AuditEvent
from apps.runs.models import Execution, ExecutionEvent
from tests.crews import conftest as crews_conftest
from tests.crews.conftest import make_agent, wait_for

pytestmark = pytest.mark.django_db(transaction=True)
runs_worker = crews_conftest.runs_worker  # the real worker fixture of the run-engine tests

URL = "/api/v1/executions/batch"


def test_each_item_is_answered_as_the_single_route_would_and_the_runs_complete(runs_worker, member, client_for,
                                                                             make_member):
    client = client_for(member)
    agent = make_agent(member, llm="builtin")
    foreign = make_agent(make_member(), llm="builtin")  # another organization's agent: a 400 for this one
    good = {"agent_id": str(agent.pk), "description": "say hi"}
    bad_bodies = [
        {"agent_id": str(foreign.pk), "description": "not ours"},
        {"description": "no target"},
        {"agent_id": str(agent.pk), "description": "x", "unknown_key": 1},
        "not an object",
    ]
    items = [good, *bad_bodies, {**good, "description": "say bye", "run_name": "second"}]
    response = client.post(URL, {"executions": items}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["created"], body["failed"]) == (2, 4)
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
                expected["code"], expected["type"], expected["detail"], expected["errors"])
            assert "execution" not in result
    ids = [r["execution"]["execution_id"] for r in body["results"] if r["status"] == 202]
    assert Execution.objects.get(pk=ids[1]).run_name == "second"
    # run by the worker through the state machine, each with its audit row
    wait_for(lambda: Execution.objects.filter(pk__in=ids, status="COMPLETED").count() == 2, 60,
             message="the batch's runs to complete")
    for pk in ids:
        assert list(ExecutionEvent.objects.filter(execution_id=pk).order_by("id").values_list("to_status", flat=True)) \
            == ["PENDING", "PREPARING", "RUNNING", "COMPLETED"]
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
    """A failure that is no item's answer (here: the database refusing the 3rd audit row) leaves no
    run of the batch behind."""
    from apps.runs import services

    client = client_for(member)
    client.raise_request_exception = False
    agent = make_agent(member)
    calls = {"n": 0}
    original = services.audit_record

    def failing_audit(**kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("audit store down")
        return original(**kwargs)

    monkeypatch.setattr(services, "audit_record", failing_audit)
    items = [{"agent_id": str(agent.pk), "description": f"run {i}"} for i in range(5)]
    response = client.post(URL, {"executions": items}, format="json")
    assert response.status_code == 500 and response.json()["code"]
    assert not Execution.objects.exists()


def test_viewers_may_not_start_runs_in_batch(make_member, client_for, member):
    viewer = make_member(organization=member.organization, role="viewer")
    agent = make_agent(member)
    response = client_for(viewer).post(URL, {"executions": [{"agent_id": str(agent.pk), "description": "x"}]},
                                       format="json")
    assert response.status_code == client_for(viewer).post(
        "/api/v1/executions", {"agent_id": str(agent.pk), "description": "x"}, format="json").status_code == 403
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
    assert "#/components/schemas/ExecutionCreated\"" in json.dumps(fields["execution"])
    assert set(schema["components"]["schemas"][item]["required"]) == {"index", "status"}
