"""Entities and relationships extracted from a document by an agent (apps/knowledge/extraction.py):
the run it starts, the proposal parsed from the agent's answer, written at once or after review."""

from __future__ import annotations

import json

import pytest
from rest_framework.exceptions import ValidationError

from apps.events.models import Event
from apps.knowledge.extraction import MARK, proposal_parse
from apps.knowledge.models import Document, Entity, KnowledgeBase, Relationship
from apps.knowledge.tasks import apply_extraction
from apps.runs.models import Execution
from tests.helpers import assert_envelope
from tests.workflows.conftest import make_agent

pytestmark = pytest.mark.django_db
X = "/api/v1/knowledge-graph/extractions"
ANSWER = (
    'Here you are:\n{"entities": [{"key": "k", "type": "person", "label": "Keeper"}, '
    '{"key": "c", "type": "animal", "label": "Marmalade", "properties": {"colour": "orange"}}], '
    '"relationships": [{"source": "k", "target": "c", "type": "owns"}, {"source": "k", "target": "nobody"}]}'
)


def _document(member, status="READY"):
    kb = KnowledgeBase.objects.create(organization=member.organization, created_by=member.user, name="Notes")
    return Document.objects.create(
        organization=member.organization,
        created_by=member.user,
        knowledge_base=kb,
        name="keeper.md",
        source_type="text",
        status=status,
        text="The keeper owns a cat named Marmalade.",
    )


def _complete(run_id, output=ANSWER):
    Execution.objects.filter(pk=run_id).update(status="COMPLETED", result=output)


def test_the_proposal_is_read_from_the_answer_and_checked():
    proposal = proposal_parse(ANSWER)
    assert [e["label"] for e in proposal["entities"]] == ["Keeper", "Marmalade"]
    assert proposal["relationships"] == [{"source": "k", "target": "c", "type": "owns", "properties": {}}]
    with pytest.raises(ValidationError, match="holds no JSON object"):
        proposal_parse("no json here")


def test_an_extraction_runs_the_agent_on_the_document_and_writes_its_proposal(member, client_for):
    client = client_for(member)
    document, agent = _document(member), make_agent(member, name="Reader")
    started = client.post(X, {"document_id": str(document.pk), "agent_id": str(agent.pk)}, format="json")
    assert started.status_code == 202, started.content
    run = Execution.objects.get(pk=started.json()["execution_id"])
    assert run.kind == "agent_task" and run.agent_id == agent.pk
    assert "Marmalade" in run.definition["description"] and run.definition[MARK]["review"] is False
    _complete(run.pk)
    apply_extraction(str(run.pk))  # what the terminal hook enqueues
    apply_extraction(str(run.pk))  # idempotent
    entities = Entity.objects.for_org(member.organization)
    assert sorted(entities.values_list("label", flat=True)) == ["Keeper", "Marmalade"]
    assert all(e.document_id == document.pk for e in entities)
    assert Relationship.objects.for_org(member.organization).get().type == "owns"
    assert Event.objects.filter(organization=member.organization, type="knowledge.entity.created").count() == 2
    body = client.get(f"{X}/{run.pk}").json()
    assert body["applied"] is True and len(body["created"]["entities"]) == 2


def test_with_review_the_proposal_waits_for_apply_and_an_edit(member, client_for, make_member):
    member.organization.settings = {**(member.organization.settings or {}), "knowledge_extraction_review": True}
    member.organization.save(update_fields=["settings"])
    client = client_for(member)
    document, agent = _document(member), make_agent(member, name="Reader")
    run_id = client.post(X, {"document_id": str(document.pk), "agent_id": str(agent.pk)}, format="json").json()[
        "execution_id"
    ]
    assert_envelope(client.post(f"{X}/{run_id}/apply", {}, format="json"), 400, code="GENERAL_001")  # not done yet
    _complete(run_id)
    apply_extraction(str(run_id))  # with review the hook's task is never enqueued; were it run, nothing is written
    # (the task applies only unreviewed runs)
    shown = client.get(f"{X}/{run_id}").json()
    assert shown["review"] is True and shown["applied"] is False and len(shown["proposal"]["entities"]) == 2
    plain = client_for(make_member("user", organization=member.organization))
    assert plain.post(f"{X}/{run_id}/apply", {}, format="json").status_code == 403
    edited = {"entities": [{"key": "c", "type": "animal", "label": "Marmalade"}], "relationships": []}
    applied = client.post(f"{X}/{run_id}/apply", edited, format="json")
    assert applied.status_code == 200, applied.content
    assert list(Entity.objects.for_org(member.organization).values_list("label", flat=True)) == ["Marmalade"]
    assert_envelope(client.post(f"{X}/{run_id}/apply", {}, format="json"), 409)


def test_refusals(member, client_for, make_member):
    client = client_for(member)
    pending, agent = _document(member, status="PENDING"), make_agent(member, name="Reader")
    assert_envelope(client.post(X, {"document_id": str(pending.pk), "agent_id": str(agent.pk)}, format="json"), 400)
    other = make_member()
    foreign = _document(other)
    assert_envelope(client.post(X, {"document_id": str(foreign.pk), "agent_id": str(agent.pk)}, format="json"), 404)
    assert client.get(f"{X}/{json.loads(json.dumps(str(agent.pk)))}").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_the_extraction_and_the_graph_gets_it(celery_worker_process, member, client_for):
    """The whole path on a worker with the offline builtin model, which answers with the prompt it was
    given: a document that is itself the answer comes back as the proposal and is written."""
    from tests.workflows.conftest import wait_for

    client = client_for(member)
    document = _document(member)
    Document.objects.filter(pk=document.pk).update(text=ANSWER.split("\n", 1)[1])
    agent = make_agent(member, name="Reader")
    run_id = client.post(X, {"document_id": str(document.pk), "agent_id": str(agent.pk)}, format="json").json()[
        "execution_id"
    ]
    wait_for(
        lambda: Relationship.objects.for_org(member.organization).exists(),
        45,
        message="the extraction run and its apply task",
    )
    assert Execution.objects.get(pk=run_id).status == "COMPLETED"
    assert sorted(Entity.objects.for_org(member.organization).values_list("label", flat=True)) == [
        "Keeper",
        "Marmalade",
    ]
    assert client.get(f"{X}/{run_id}").json()["applied"] is True
