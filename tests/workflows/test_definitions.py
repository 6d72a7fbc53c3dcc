"""Definitions: the condition language, validation with step ids, CRUD, versions (no worker)."""

from __future__ import annotations

import pytest

from apps.workflows import conditions
from tests.helpers import assert_envelope
from tests.workflows.conftest import definition, make_agent, make_workflow, step

pytestmark = pytest.mark.django_db


# --- conditions --------------------------------------------------------------------------------

CTX = {
    "inputs": {"mode": "fast", "count": 3, "tags": ["a", "b"], "flag": False, "nested": {"x": {"y": 2}}},
    "steps": {"a": {"status": "COMPLETED", "output": "Builtin reply", "skipped": False}},
    "trigger": {"type": "manual"},
}


@pytest.mark.parametrize(
    "text,expected",
    [
        ("inputs.mode == 'fast'", True),
        ('inputs.mode === "slow"', False),
        ("inputs.count > 2 && inputs.count <= 3", True),
        ("inputs.count >= 4 || inputs.mode != 'fast'", False),
        ("!inputs.flag", True),
        ("!(inputs.count == 3)", False),
        ("inputs.tags.length == 2 && inputs.tags[1] == 'b'", True),
        ("inputs.nested.x.y * 2", None),  # '*' is not in the language: checked below as an error
        ("inputs.missing.deeper == null", True),
        ("inputs.missing == undefined", True),
        ("steps.a.status == 'COMPLETED' && steps.a.output.length > 0", True),
        ("steps['a'].skipped", False),
        ("inputs.count > 'x'", False),  # different types never compare
        ("-inputs.count < 0", True),
        ("1 < 2 == true", True),  # relational binds tighter than equality, as in JavaScript
        ("inputs.mode || 'default'", True),
        ("0 || ''", False),
        ("trigger.type == 'manual'", True),
    ],
)
def test_conditions_evaluate_like_javascript(text, expected):
    if expected is None:
        with pytest.raises(conditions.ConditionError):
            conditions.parse(text)
        return
    assert conditions.check(text, CTX) is expected


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("", "empty"),
        ("inputs.mode ==", "unexpected the end"),
        ("inputs.mode = 'x'", "unexpected character"),
        ("__import__('os')", "unknown name '__import__'"),
        ("inputs.mode == 'x' )", "unexpected ')'"),
        ("(inputs.mode", "expected ')'"),
        ("inputs.", "expected a member name"),
        ("inputs[1.5]", "integer index"),
        ("'unterminated", "unexpected character"),
        ("inputs.a; inputs.b", "unexpected character ';'"),
        ("(" * 100 + "1" + ")" * 100, "nested too deeply"),
    ],
)
def test_bad_conditions_are_parse_errors_with_their_column(text, fragment):
    with pytest.raises(conditions.ConditionError) as info:
        conditions.parse(text)
    assert fragment in str(info.value)


def test_templates_fill_parameters_with_values_and_text():
    rendered = conditions.render(
        {
            "count": "{{ inputs.count }}",
            "text": "mode={{inputs.mode}} y={{ inputs.nested.x.y }}",
            "list": ["{{ steps.a.output }}", 4],
            "none": "[{{ inputs.nope }}]",
        },
        CTX,
    )
    assert rendered == {"count": 3, "text": "mode=fast y=2", "list": ["Builtin reply", 4], "none": "[]"}


# --- validation --------------------------------------------------------------------------------


def _problems(client, body):
    response = client.post("/api/v1/workflows/validate", body, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def test_validate_accepts_a_good_definition_and_fills_defaults(member, client_for):
    agent = make_agent(member)
    body = _problems(
        client_for(member), {"definition": {"steps": [step("a", agent), step("b", agent, depends_on=["a"])]}}
    )
    assert body["valid"] is True and body["errors"] == []
    d = body["definition"]
    assert d["trigger"] == {"type": "manual", "conditions": {}}
    assert d["error_handling"]["strategy"] == "fail_fast" and d["retry_policy"]["max_attempts"] == 1
    assert d["steps"][0]["depends_on"] == []


def test_validation_names_every_problem_with_its_step(make_member, client_for):
    member, other = make_member(), make_member()
    agent = make_agent(member)
    foreign = make_agent(other)
    bad = definition(
        [
            step("a", agent),
            step("a", agent),  # duplicate id
            step("b", agent, depends_on=["ghost"]),  # unknown dependency
            step("c", agent, depends_on=["d"]),
            step("d", agent, depends_on=["e"]),
            step("e", agent, depends_on=["c"]),
        ]
    )
    body = _problems(client_for(member), bad)
    assert body["valid"] is False
    by_step = {(e["step_id"], e["message"]) for e in body["errors"]}
    assert ("a", "duplicate step id 'a' (also step 0)") in by_step
    assert ("b", "unknown step 'ghost' in depends_on") in by_step
    cycle = [e for e in body["errors"] if "cycle" in e["message"]]
    assert len(cycle) == 1 and cycle[0]["message"] in {
        "the steps form a cycle: c → d → e → c",
        "the steps form a cycle: d → e → c → d",
        "the steps form a cycle: e → c → d → e",
    }

    agents = definition(
        [
            step("mine", agent),
            {"id": "theirs", "agent_id": str(foreign.pk), "action": "x"},
            {"id": "missing", "agent_number": 999, "action": "x"},
        ]
    )
    errors = _problems(client_for(member), agents)["errors"]
    messages = {e["step_id"]: e["message"] for e in errors}
    assert messages["theirs"] == f"no agent {foreign.pk} in this organization"
    assert messages["missing"] == "no agent number 999 in this organization"
    assert "mine" not in messages
    both = {"id": "both", "agent_number": agent.agent_number, "agent_id": str(agent.pk), "action": "x"}
    errors = _problems(client_for(member), definition([both]))["errors"]
    assert errors == [
        {
            "field": "definition.steps[0]",
            "step_id": "both",
            "message": "a step names its agent by exactly one of agent_number or agent_id",
        }
    ]


def test_invalid_conditions_and_unreachable_references_are_validation_errors(member, client_for):
    agent = make_agent(member)
    body = _problems(
        client_for(member),
        definition(
            [
                step("a", agent),
                step("b", agent, depends_on=["a"], condition="steps.a.output.length > 0 &&"),
                step("c", agent, condition="steps.a.status == 'COMPLETED'"),  # a is not upstream of c
                step("d", agent, depends_on=["b"], condition="steps.a.status == 'COMPLETED'"),  # transitively fine
                step("e", agent, parameters={"x": "{{ inputs..y }}"}),
                step("f", agent, condition="steps.zzz.failed"),
            ]
        ),
    )
    by_step = {e["step_id"]: e for e in body["errors"]}
    assert set(by_step) == {"b", "c", "e", "f"}
    assert by_step["b"]["field"] == "definition.steps[1].condition"
    assert "unexpected the end of the expression" in by_step["b"]["message"]
    assert "reads steps.a, which is not among its dependencies" in by_step["c"]["message"]
    assert by_step["e"]["field"] == "definition.steps[4].parameters"
    assert "reads steps.zzz, which is not a step of this workflow" in by_step["f"]["message"]


def test_schema_errors_point_at_the_field(member, client_for):
    agent = make_agent(member)
    body = _problems(
        client_for(member),
        {
            "steps": [step("a", agent, timeout_ms=-5)],
            "surprise": 1,
            "error_handling": {"strategy": "pray"},
            "retry_policy": {"backoff_strategy": "random"},
        },
    )
    fields = {e["field"] for e in body["errors"]}
    assert {
        "definition",
        "definition.steps[0].timeout_ms",
        "definition.error_handling.strategy",
        "definition.retry_policy.backoff_strategy",
    } <= fields
    assert next(e for e in body["errors"] if e["field"] == "definition.steps[0].timeout_ms")["step_id"] == "a"


# --- CRUD and versions -------------------------------------------------------------------------


def test_create_update_versions_and_history(member, client_for):
    agent = make_agent(member)
    client = client_for(member)
    created = client.post(
        "/api/v1/workflows",
        {"name": "Flow", "description": "d", "definition": definition([step("a", agent)])},
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["version"] == 1 and body["execution_count"] == 0 and body["success_rate"] == 0.0
    assert body["user_id"] == str(member.user.pk) and body["is_active"] is True and body["last_executed"] is None
    assert body["webhook_secret"].startswith("whsec_") and "/api/v1/workflow-hooks/" in body["webhook_url"]
    url = f"/api/v1/workflows/{body['id']}"
    assert "webhook_secret" not in client.get(url).json()

    renamed = client.put(url, {"name": "Renamed"}, format="json").json()
    assert renamed["name"] == "Renamed" and renamed["version"] == 1
    changed = client.put(
        url, {"definition": definition([step("a", agent), step("b", agent, depends_on=["a"])])}, format="json"
    ).json()
    assert changed["version"] == 2
    versions = client.get(f"{url}/versions").json()["items"]
    assert [v["version"] for v in versions] == [2, 1] and len(versions[1]["definition"]["steps"]) == 1
    history = client.get(f"{url}/history").json()
    assert history["items"] == [] and history["execution_count"] == 0 and history["success_rate"] == 0.0

    refused = client.put(url, {"definition": definition([step("a", agent, depends_on=["a"])])}, format="json")
    problem = assert_envelope(refused, 400, "WORKFLOW_003")
    assert problem["errors"] == [
        {"field": "definition.steps[0].depends_on", "message": "step 'a' depends on itself", "step_id": "a"}
    ]
    assert client.get(url).json()["version"] == 2  # nothing half-written
    assert client.delete(url).status_code == 204
    assert client.get(url).status_code == 404


def test_roles_and_inactive_workflows(make_member, client_for):
    owner = make_member()
    agent_role = make_member("agent", organization=owner.organization)
    agent = make_agent(owner)
    workflow = make_workflow(owner, definition([step("a", agent)]))
    machine = client_for(agent_role)
    assert machine.get("/api/v1/workflows").json()["total"] == 1
    assert (
        machine.post(
            "/api/v1/workflows", {"name": "x", "definition": definition([step("a", agent)])}, format="json"
        ).status_code
        == 403
    )
    client_for(owner).put(f"/api/v1/workflows/{workflow.pk}", {"is_active": False}, format="json")
    refused = client_for(owner).post(f"/api/v1/workflows/{workflow.pk}/execute", {}, format="json")
    assert_envelope(refused, 409, "WORKFLOW_002")


def test_rotating_the_webhook_secret(member, client_for):
    agent = make_agent(member)
    workflow = make_workflow(member, definition([step("a", agent)], trigger={"type": "webhook"}))
    rotated = client_for(member).post(f"/api/v1/workflows/{workflow.pk}/webhook-secret").json()
    assert rotated["webhook_secret"] != workflow.secret and rotated["webhook_url"].endswith(workflow.webhook_token)


def test_a_step_never_has_two_live_attempts(member):
    from django.db import IntegrityError, transaction

    from apps.workflows.models import StepRun
    from apps.workflows.services import workflow_start

    agent = make_agent(member)
    run = workflow_start(workflow=make_workflow(member, definition([step("a", agent)])), actor=member.user)
    StepRun.objects.create(organization=member.organization, run=run, step_id="a", attempt=1, state="active")
    with pytest.raises(IntegrityError), transaction.atomic():
        StepRun.objects.create(organization=member.organization, run=run, step_id="a", attempt=2, state="scheduled")
    with pytest.raises(IntegrityError), transaction.atomic():
        StepRun.objects.create(organization=member.organization, run=run, step_id="a", attempt=1, state="failed")
    StepRun.objects.filter(run=run).update(state="failed")
    StepRun.objects.create(organization=member.organization, run=run, step_id="a", attempt=2, state="scheduled")


def test_deleting_a_workflow_or_its_organization_takes_its_runs(member, client_for):
    from apps.accounts.models import Organization
    from apps.workflows.models import WorkflowRun
    from apps.workflows.services import workflow_start

    agent = make_agent(member)
    workflow = make_workflow(member, definition([step("a", agent)]))
    run = workflow_start(workflow=workflow, actor=member.user)
    assert client_for(member).delete(f"/api/v1/workflows/{workflow.pk}").status_code == 204
    assert not WorkflowRun.objects.filter(pk=run.pk).exists()
    run.execution.refresh_from_db()
    assert run.execution.status == "CANCELLED"  # a live run is cancelled, not orphaned
    other = make_workflow(member, definition([step("a", agent)]), name="Other")
    workflow_start(workflow=other, actor=member.user)
    Organization.objects.filter(pk=member.organization.pk).delete()


def test_lists_run_a_constant_number_of_queries(member, client_for, django_assert_max_num_queries):
    from apps.workflows.models import StepRun
    from apps.workflows.services import workflow_start

    agent = make_agent(member)
    client = client_for(member)

    def add_runs(count):
        for index in range(count):
            workflow = make_workflow(
                member, definition([step("a", agent), step("b", agent, depends_on=["a"])]), name=f"W{index}"
            )
            run = workflow_start(workflow=workflow, actor=member.user)
            for step_id in ("a", "b"):
                StepRun.objects.create(organization=member.organization, run=run, step_id=step_id, state="completed")
        return run

    add_runs(2)
    for url in ("/api/v1/workflows", "/api/v1/workflow-runs"):
        client.get(url)  # warm-up: the credential's first use writes its last-used mark
    counts = {}
    for size in ("small", "large"):
        for url in ("/api/v1/workflows", "/api/v1/workflow-runs"):
            from django.db import connection
            from django.test.utils import CaptureQueriesContext

            with CaptureQueriesContext(connection) as captured:
                assert client.get(url).status_code == 200
            counts[(size, url)] = len(captured)
        if size == "small":
            last = add_runs(6)
    for url in ("/api/v1/workflows", "/api/v1/workflow-runs"):
        assert counts[("large", url)] == counts[("small", url)], (url, counts)
    with django_assert_max_num_queries(counts[("small", "/api/v1/workflow-runs")] + 2):
        assert len(client.get(f"/api/v1/workflow-runs/{last.pk}").json()["steps"]) == 2


def test_the_sweep_finds_an_overdue_run_and_advance_times_it_out(member):
    from datetime import timedelta

    from django.utils import timezone

    from apps.workflows.engine import workflow_advance, workflow_sweep
    from apps.workflows.models import StepRun, WorkflowRun
    from apps.workflows.services import workflow_start

    agent = make_agent(member)
    run = workflow_start(
        workflow=make_workflow(member, definition([step("a", agent)], timeout_ms=60000)), actor=member.user
    )
    assert workflow_advance(execution_id=run.execution_id) == "advanced"  # no worker: a stays PENDING
    assert workflow_sweep() == 0
    WorkflowRun.objects.filter(pk=run.pk).update(deadline_at=timezone.now() - timedelta(seconds=1))
    assert workflow_sweep() == 1
    workflow_advance(execution_id=run.execution_id)  # fails the run's live step (never claimed: ends at once)
    assert workflow_advance(execution_id=run.execution_id) == "failed"
    run.refresh_from_db()
    run.execution.refresh_from_db()
    assert run.execution.status == "FAILED" and run.error == "the workflow timed out after 60000 ms"
    a = StepRun.objects.get(run=run)
    assert a.state == "cancelled" and a.execution.status == "CANCELLED"
    assert workflow_advance(execution_id=run.execution_id) == "ended (FAILED)"  # idempotent


def test_changing_workflows_needs_step_up_when_the_organization_asks_for_it(member, client_for):
    agent = make_agent(member)
    workflow = make_workflow(member, definition([step("a", agent)]))
    member.organization.settings = {"require_step_up": True}
    member.organization.save()
    client = client_for(member)
    body = {"name": "x", "definition": definition([step("a", agent)])}
    assert_envelope(client.post("/api/v1/workflows", body, format="json"), 403, "AUTH_002")
    assert_envelope(client.put(f"/api/v1/workflows/{workflow.pk}", {"name": "y"}, format="json"), 403, "AUTH_002")
    assert_envelope(client.delete(f"/api/v1/workflows/{workflow.pk}"), 403, "AUTH_002")
    assert client.get(f"/api/v1/workflows/{workflow.pk}").status_code == 200  # reading and running stay open
    assert client.post(f"/api/v1/workflows/{workflow.pk}/execute", {}, format="json").status_code == 202
