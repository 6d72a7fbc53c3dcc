"""Human-in-the-loop approvals through a REAL Celery worker: a crew parks WAITING_FOR_APPROVAL, no
worker holds it, and a new task resumes it once a person (or the deadline) answers."""

from __future__ import annotations

import pytest

from apps.approvals.models import Approval
from apps.events.models import Event
from apps.runs.models import Execution, ExecutionEvent, TraceSpan
from tests.crews.conftest import wait_for
from tests.helpers import assert_envelope

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

AGENTS_YAML = """\
writer:
  role: Writer
  goal: Draft text
  backstory: Drafts things.
editor:
  role: Editor
  goal: Finish text
  backstory: Polishes drafts.
"""


def tasks_yaml(approval: str) -> str:
    return f"""\
draft_task:
  description: Draft a tagline about {{topic}}
  expected_output: One line
  agent: writer
  human_input: true
  approval: {approval}
final_task:
  description: Polish the tagline
  expected_output: The final line
  agent: editor
  context: [draft_task]
"""


def _start(client, approval: str, topic: str) -> str:
    response = client.post(
        "/api/v1/executions",
        {"agents_yaml": AGENTS_YAML, "tasks_yaml": tasks_yaml(approval), "inputs": {"topic": topic}},
        format="json",
    )
    assert response.status_code == 202, response.content
    return response.json()["execution_id"]


def _status(pk) -> str:
    return Execution.objects.get(pk=pk).status


def _waiting(pk):
    return _status(pk) == "WAITING_FOR_APPROVAL" and Approval.objects.filter(execution_id=pk).first()


def _ended(pk):
    execution = Execution.objects.get(pk=pk)
    return execution if execution.is_terminal else None


def _llm_spans(pk, task_name=None):
    spans = TraceSpan.objects.filter(execution_id=pk)
    if task_name is None:
        return spans.filter(kind="llm").count()
    return spans.filter(kind="task", name=task_name).count()


def test_approve_with_edit_resumes_without_rerunning_reject_fails_roles_are_enforced_and_deadlines_apply(
    celery_worker_process, make_member, client_for
):
    """One worker for every path (a worker start and a database flush cost more than the paths)."""
    developer = make_member("developer")
    org = developer.organization
    plain_user = make_member("user", organization=org)
    admin = make_member("admin", organization=org)
    client = client_for(developer)

    edited_run = _start(client, "{role: developer}", "owls")
    rejected_run = _start(client, "{role: admin}", "cats")

    approval = wait_for(lambda: _waiting(edited_run), 30, message="the first run to park")
    rejected_approval = wait_for(lambda: _waiting(rejected_run), 30, message="the second run to park")
    assert approval.step_id == "draft_task" and approval.source == "crew_task"
    assert approval.proposed["output"].startswith("Builtin reply to: Draft a tagline about owls")
    parked = Execution.objects.get(pk=edited_run)
    assert parked.checkpoint["pending_task"] == "draft_task" and parked.heartbeat_at is None
    assert _llm_spans(edited_run) == 1  # the draft was written once, the final task not yet

    pending = client.get("/api/v1/approvals", {"pending": "true"}).json()
    assert {item["id"] for item in pending["items"]} == {str(approval.pk), str(rejected_approval.pk)}
    assert all(item["execution_status"] == "WAITING_FOR_APPROVAL" for item in pending["items"])

    # a role that may not answer: 403 in the envelope, and nothing changes
    refused = client_for(plain_user).post(f"/api/v1/approvals/{rejected_approval.pk}/approve", {}, format="json")
    assert_envelope(refused, 403)
    refused = client.post(f"/api/v1/approvals/{rejected_approval.pk}/approve", {}, format="json")  # developer < admin
    assert_envelope(refused, 403)
    assert "admin" in refused.json()["detail"]
    assert _status(rejected_run) == "WAITING_FOR_APPROVAL"

    # approve with an edited value: the run resumes and uses it, the draft is not written again
    answer = client.post(f"/api/v1/approvals/{approval.pk}/approve", {"value": "EDITED-TAGLINE-42"}, format="json")
    assert answer.status_code == 200, answer.content
    assert answer.json()["status"] == "approved" and answer.json()["edited_value"] == "EDITED-TAGLINE-42"
    again = client.post(f"/api/v1/approvals/{approval.pk}/approve", {}, format="json")
    assert_envelope(again, 409)

    reject = client_for(admin).post(
        f"/api/v1/approvals/{rejected_approval.pk}/reject", {"feedback": "off-brand"}, format="json"
    )
    assert reject.status_code == 200 and reject.json()["status"] == "rejected"

    # nobody answers these two: their deadline (1 s) applies the default
    approve_by_default = _start(client, "{timeout_seconds: 1, default: approve}", "bees")
    reject_by_default = _start(client, "{timeout_seconds: 1}", "ants")  # default: reject

    done = wait_for(lambda: _ended(edited_run), 30, message="the approved run to end")
    assert done.status == "COMPLETED", done.error
    assert "Context from draft_task: EDITED-TAGLINE-42" in done.result
    assert "Polish the tagline" in done.result
    assert _llm_spans(edited_run, "draft_task") == 1 and _llm_spans(edited_run, "final_task") == 1
    assert _llm_spans(edited_run) == 2  # one LLM call per task: no token spent twice
    llm_tokens = sum(TraceSpan.objects.filter(execution_id=edited_run, kind="llm").values_list("tokens_out", flat=True))
    assert done.tokens_out == llm_tokens
    assert list(ExecutionEvent.objects.filter(execution_id=edited_run).values_list("to_status", flat=True)) == [
        "PENDING",
        "PREPARING",
        "RUNNING",
        "WAITING_FOR_APPROVAL",
        "PENDING",
        "PREPARING",
        "RUNNING",
        "COMPLETED",
    ]

    failed = wait_for(lambda: _ended(rejected_run), 30, message="the rejected run to end")
    assert failed.status == "FAILED" and "rejected" in failed.error and "off-brand" in failed.error
    assert _llm_spans(rejected_run) == 1

    events = list(
        Event.objects.filter(execution_id=edited_run, type__startswith="approval.").values_list("type", flat=True)
    )
    assert events == ["approval.requested", "approval.resolved"]

    approved = wait_for(lambda: _ended(approve_by_default), 30, message="the deadline to approve")
    assert approved.status == "COMPLETED", approved.error
    assert "Context from draft_task: Builtin reply to: Draft a tagline about bees" in approved.result
    approval = Approval.objects.get(execution_id=approve_by_default)
    assert approval.status == "approved" and approval.timed_out and approval.resolved_by is None

    rejected = wait_for(lambda: _ended(reject_by_default), 30, message="the deadline to reject")
    assert rejected.status == "FAILED" and "deadline" in rejected.error
    assert Approval.objects.get(execution_id=reject_by_default).status == "rejected"
    assert client.get("/api/v1/approvals", {"pending": "true"}).json()["total"] == 0
