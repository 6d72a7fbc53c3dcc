"""The run page and its trace JSON (spans nested in time, logs beside their span, secrets
redacted), its cancel/replay actions, the workflow and crew graphs; another organization's
objects answer 404."""

from __future__ import annotations

import datetime
import json

import pytest
from django.utils import timezone

from apps.runs.models import Execution, ExecutionLog, TraceSpan
from tests.console.conftest import fast_user

pytestmark = pytest.mark.django_db

SECRET = "sk-live1234567890abcdef"


def _span(run, span_id, kind, name, start, seconds, parent="", **fields):
    t0 = run.started_at
    return TraceSpan.objects.create(
        organization=run.organization,
        execution=run,
        trace_id=run.trace_id,
        span_id=span_id,
        parent_span_id=parent,
        kind=kind,
        name=name,
        started_at=t0 + datetime.timedelta(seconds=start),
        ended_at=t0 + datetime.timedelta(seconds=start + seconds),
        duration_ms=seconds * 1000,
        **fields,
    )


def _traced_run(member):
    now = timezone.now() - datetime.timedelta(seconds=30)
    run = Execution.objects.create(
        organization=member.organization,
        kind="crew",
        run_name="traced",
        status="COMPLETED",
        started_at=now,
        completed_at=now + datetime.timedelta(seconds=10),
        created_by=member.user,
        tokens_in=30,
        tokens_out=12,
        attempts=1,
    )
    _span(run, "root", "task", "crew traced", 0, 10)
    _span(run, "task1", "task", "research_task", 0.1, 5, parent="root")
    _span(
        run,
        "llm1",
        "llm",
        "builtin/echo",
        0.2,
        1,
        parent="task1",
        model="builtin/echo",
        tokens_in=10,
        tokens_out=4,
        attributes={"provider": "builtin"},
    )
    _span(
        run,
        "tool1",
        "tool",
        "http_get",
        1.5,
        1,
        parent="task1",
        attributes={"arguments": {"url": "https://x", "api_key": SECRET}, "output": f"used Bearer {SECRET}"},
    )
    _span(run, "llm2", "llm", "builtin/echo", 3, 1, parent="task1", model="builtin/echo", tokens_in=20, tokens_out=8)
    for seq, (offset, message, data) in enumerate(
        [(1.2, "thinking", {}), (2.6, "tool http_get returned", {"tool": "http_get"}), (9.5, f"password={SECRET}", {})],
        start=1,
    ):
        ExecutionLog.objects.create(
            organization=run.organization,
            execution=run,
            seq=seq,
            message=message,
            data=data,
            created_at=run.started_at + datetime.timedelta(seconds=offset),
        )
    return run


def test_trace_nests_spans_places_logs_and_redacts(client, make_member):
    owner = make_member("owner")
    run = _traced_run(owner)
    client.force_login(owner.user)
    trace = client.get(f"/dashboard/run/{run.pk}/trace").json()
    assert [(s["span_id"], s["depth"]) for s in trace["spans"]] == [
        ("root", 0),
        ("task1", 1),
        ("llm1", 2),
        ("tool1", 2),
        ("llm2", 2),
    ]
    llm = [s for s in trace["spans"] if s["kind"] == "llm"]
    assert [(s["tokens_in"], s["tokens_out"]) for s in llm] == [(10, 4), (20, 8)]
    assert llm[0]["start_ms"] == pytest.approx(200, abs=1) and trace["total_ms"] == pytest.approx(10000, abs=1)
    assert {log["message"]: log["span_id"] for log in trace["logs"]} == {
        "thinking": "llm1",
        "tool http_get returned": "tool1",
        "password=[redacted]": "root",
    }
    tool = next(s for s in trace["spans"] if s["kind"] == "tool")
    assert tool["attributes"]["arguments"] == {"url": "https://x", "api_key": "[redacted]"}
    assert SECRET not in json.dumps(trace)
    assert trace["run"]["who"] == owner.user.email and trace["run"]["can_retry"] and not trace["run"]["can_cancel"]
    page = client.get(f"/dashboard/run/{run.pk}")
    assert page.status_code == 200 and SECRET not in page.content.decode()
    assert 'id="run-trace"' in page.content.decode()


def test_other_organizations_runs_are_404_and_staff_see_all(client, make_member):
    mine, theirs = make_member("owner"), make_member("owner")
    run = _traced_run(theirs)
    client.force_login(mine.user)
    for path in (f"/dashboard/run/{run.pk}", f"/dashboard/run/{run.pk}/trace"):
        assert client.get(path).status_code == 404
    assert client.post(f"/dashboard/run/{run.pk}/replay").status_code == 404
    client.force_login(make_member("developer", organization=theirs.organization).user)
    assert client.get(f"/dashboard/run/{run.pk}/trace").status_code == 403
    client.force_login(fast_user(is_staff=True))
    assert client.get(f"/dashboard/run/{run.pk}/trace").status_code == 200
    assert client.get(f"/dashboard/run/{run.pk}/trace", {"organization": mine.organization.slug}).status_code == 404


def test_cancel_and_replay_go_through_the_services(client, make_member):
    owner = make_member("owner")
    pending = Execution.objects.create(
        organization=owner.organization, kind="crew", run_name="waiting", definition={"crew": {}}
    )
    client.force_login(owner.user)
    response = client.post(f"/dashboard/run/{pending.pk}/cancel")
    assert response.status_code == 302 and response["Location"].startswith(f"/dashboard/run/{pending.pk}?message=")
    pending.refresh_from_db()
    assert pending.status == "CANCELLED" and pending.cancel_requested
    again = client.post(f"/dashboard/run/{pending.pk}/cancel", follow=True)
    assert "already ended" in again.content.decode()
    response = client.post(f"/dashboard/run/{pending.pk}/replay")
    replay = Execution.objects.exclude(pk=pending.pk).get()
    assert response["Location"].startswith(f"/dashboard/run/{replay.pk}?")
    assert replay.run_name == "waiting (retry)" and replay.created_by == owner.user
    from apps.audit.models import AuditEvent

    assert AuditEvent.objects.filter(action="execution.cancel", organization=owner.organization).exists()


def test_workflow_graph_and_run_states(client, make_member):
    from apps.workflows.models import StepRun, WorkflowRun, WorkflowVersion
    from tests.workflows.conftest import definition, make_agent, make_workflow, step

    owner = make_member("owner")
    agent = make_agent(owner)
    flow = make_workflow(
        owner,
        definition(
            [
                step("a", agent),
                step("b", agent, depends_on=["a"], condition="steps.a.status == 'completed'"),
                step("c", agent, depends_on=["a"]),
            ]
        ),
        name="Graph flow",
    )
    client.force_login(owner.user)
    page = client.get(f"/dashboard/workflows/{flow.pk}")
    assert page.status_code == 200
    html = page.content.decode()
    data = json.loads(html[html.index('id="graph-data" type="application/json">') + 40 :].split("</script>")[0])
    assert [n["id"] for n in data["graph"]["nodes"]] == ["a", "b", "c"]
    assert {(e["source"], e["target"], e["label"]) for e in data["graph"]["edges"]} == {
        ("a", "b", "steps.a.status == 'completed'"),
        ("a", "c", ""),
    }
    execution = Execution.objects.create(organization=owner.organization, kind="workflow", status="FAILED")
    run = WorkflowRun.objects.create(
        organization=owner.organization,
        workflow=flow,
        version=1,
        execution=execution,
        workflow_version=WorkflowVersion.objects.get(workflow=flow, version=1),
    )
    step_exec = Execution.objects.create(
        organization=owner.organization,
        kind="workflow_step",
        parent=execution,
        status="COMPLETED",
        tokens_in=5,
        tokens_out=2,
        cost="0.25",
    )
    StepRun.objects.create(
        organization=owner.organization, run=run, step_id="a", state="completed", execution=step_exec
    )
    StepRun.objects.create(organization=owner.organization, run=run, step_id="b", state="failed", attempt=2)
    trace = client.get(f"/dashboard/run/{execution.pk}/trace").json()
    assert (trace["run"]["steps_tokens"], trace["run"]["steps_cost"]) == (7, "0.250000")
    assert [c["id"] for c in trace["children"]] == [str(step_exec.pk)]
    graph = trace["workflow"]["graph"]
    assert {n["id"]: (n["state"], n["attempts"]) for n in graph["nodes"]} == {
        "a": ("completed", 1),
        "b": ("failed", 2),
        "c": ("not_run", 0),
    }
    assert graph["nodes"][0]["execution_id"] == str(step_exec.pk)
    own = client.get(f"/dashboard/run/{step_exec.pk}/trace").json()["workflow"]
    assert own["workflow"]["execution_id"] == str(execution.pk)
    assert next(n for n in own["graph"]["nodes"] if n["id"] == "a")["current"] is True
    client.force_login(make_member("owner").user)
    assert client.get(f"/dashboard/workflows/{flow.pk}").status_code == 404


def test_crew_graph_draws_context_links(client, make_member):
    from tests.crews.conftest import make_crew

    owner = make_member("owner")
    crew = make_crew(owner)
    client.force_login(owner.user)
    html = client.get(f"/dashboard/crews/{crew.pk}").content.decode()
    data = json.loads(html[html.index('id="graph-data" type="application/json">') + 40 :].split("</script>")[0])
    kinds = {(e["source"], e["target"]): e["kind"] for e in data["graph"]["edges"]}
    assert kinds[("task:research_task", "task:report_task")] == "context"
    assert kinds[("task:analysis_task", "task:report_task")] == "context"
    assert kinds[("task:research_task", "task:analysis_task")] == "next"
    assert kinds[("agent:writer", "task:report_task")] == "performs"
    assert len([n for n in data["graph"]["nodes"] if n["kind"] == "agent"]) == 3
    client.force_login(make_member("owner").user)
    assert client.get(f"/dashboard/crews/{crew.pk}").status_code == 404


def test_admin_change_pages_link_to_the_console(client, make_member):
    from tests.crews.conftest import make_crew
    from tests.workflows.conftest import definition, make_agent, make_workflow, step

    owner = make_member("owner")
    run = _traced_run(owner)
    crew = make_crew(owner)
    flow = make_workflow(owner, definition([step("a", make_agent(owner))]))
    client.force_login(fast_user(is_staff=True, is_superuser=True))
    for admin_path, console_path in (
        (f"runs/execution/{run.pk}", f"run/{run.pk}"),
        (f"crews/crew/{crew.pk}", f"crews/{crew.pk}"),
        (f"workflows/workflow/{flow.pk}", f"workflows/{flow.pk}"),
    ):
        html = client.get(f"/admin/{admin_path}/change/").content.decode()
        assert f'href="/dashboard/{console_path}"' in html, admin_path
