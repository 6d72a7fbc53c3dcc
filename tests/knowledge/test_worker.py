"""Through a real Celery worker: a document is ingested, an agent (builtin provider) answers from
it with the chunk ids in its run's result, and a workflow's ``knowledge`` step hands chunks to the
agent step after it."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.knowledge.models import Chunk, Document
from apps.runs.models import Execution
from tests.workflows.conftest import definition, make_agent, make_workflow, wait_for

pytestmark = pytest.mark.django_db(transaction=True)
B = "/api/v1/knowledge-bases"
FACT = (
    "The lighthouse keeper's cat is named Marmalade. Marmalade sleeps on the lens room stairs and eats sardines "
    "every Tuesday."
)


def _ready(doc_id):
    doc = Document.objects.get(pk=doc_id)
    return doc if doc.status in ("READY", "FAILED") else None


def test_an_agent_answers_from_its_document_and_a_workflow_step_hands_chunks_on(
    celery_worker_process, member, client_for
):
    client = client_for(member)
    kb = client.post(B, {"name": "Lighthouse", "chunk_size": 20, "chunk_overlap": 4}, format="json").json()
    upload = SimpleUploadedFile("keeper.md", ("# Keeper notes\n\n" + FACT).encode(), content_type="text/markdown")
    doc = client.post(f"{B}/{kb['id']}/documents", {"file": upload}, format="multipart").json()
    ingested = wait_for(lambda: _ready(doc["id"]), 30, message="the worker to ingest the document")
    assert ingested.status == "READY", ingested.error
    chunk_ids = set(Chunk.objects.filter(document_id=doc["id"]).values_list("id", flat=True))
    assert len(chunk_ids) >= 2

    agent = make_agent(member, name="Keeper", tools=["knowledge_search"], config={"knowledge_base_ids": [kb["id"]]})
    ask = '/tool knowledge_search {"query": "what is the cat called", "top_k": 2}'
    started = client.post(
        f"/api/v1/agents/{agent.pk}/task", {"description": ask, "expected_output": "a name"}, format="json"
    )
    assert started.status_code == 202, started.content
    run_id = started.json().get("task_id") or started.json().get("execution_id") or started.json()["id"]
    run = wait_for(
        lambda: Execution.objects.filter(pk=run_id, status__in=["COMPLETED", "FAILED"]).first(),
        30,
        message="the agent run",
    )
    assert run.status == "COMPLETED", run.error
    assert "Marmalade" in run.result["output"]  # the builtin model answers with what the tool returned
    cited = {c["chunk_id"] for c in run.result["citations"]}
    assert cited and cited <= {str(i) for i in chunk_ids}
    assert all(c["document_id"] == doc["id"] for c in run.result["citations"])

    flow = make_workflow(
        member,
        definition(
            [
                {
                    "id": "lookup",
                    "type": "knowledge",
                    "query": "{{ inputs.question }}",
                    "knowledge_base_ids": [kb["id"]],
                    "top_k": 1,
                    "mode": "hybrid",
                },
                {
                    "id": "answer",
                    "agent_number": agent.agent_number,
                    "action": "answer from the context",
                    "depends_on": ["lookup"],
                },
            ]
        ),
    )
    started = client.post(
        f"/api/v1/workflows/{flow.pk}/execute", {"inputs": {"question": "when are sardines eaten"}}, format="json"
    )
    assert started.status_code in (200, 201, 202), started.content
    steps = lambda: {
        e.definition.get("step_id"): e
        for e in Execution.objects.filter(  # noqa: E731
            kind="workflow_step", status="COMPLETED"
        )
    }
    done = wait_for(lambda: (s := steps()) and "answer" in s and s, 40, message="both workflow steps")
    lookup = done["lookup"].result
    assert lookup["query"] == "when are sardines eaten" and len(lookup["chunks"]) == 1
    assert "sardines" in lookup["chunks"][0]["text"]
    assert lookup["citations"][0]["chunk_id"] == lookup["chunks"][0]["chunk_id"]
    answer = done["answer"]
    assert "sardines" in json.dumps(answer.definition["context"]["lookup"])  # handed to the next step


def test_a_crew_agent_searches_its_knowledge_sources_and_the_run_cites_the_chunks(
    celery_worker_process, member, client_for
):
    """CrewAI's ``knowledge_sources`` (on an agent, and crew-wide in its config) name knowledge bases:
    the agent gets ``knowledge_search`` over them and the run's result cites the chunks it read."""
    client = client_for(member)
    kb = client.post(B, {"name": "keeper-notes", "chunk_size": 20, "chunk_overlap": 4}, format="json").json()
    doc = client.post(
        f"{B}/{kb['id']}/documents", {"name": "keeper.md", "text": "# Keeper notes\n\n" + FACT}, format="json"
    ).json()
    ingested = wait_for(lambda: _ready(doc["id"]), 30, message="the worker to ingest the document")
    assert ingested.status == "READY", ingested.error
    chunk_ids = {str(i) for i in Chunk.objects.filter(document_id=doc["id"]).values_list("id", flat=True)}

    ask = '"/tool knowledge_search {\\"query\\": \\"what is the cat called\\", \\"top_k\\": 2}"'
    tasks = f"t:\n  description: {ask}\n  expected_output: a name\n  agent: keeper\n"
    agent_level = (
        "keeper:\n  role: Keeper\n  goal: Answer\n  backstory: Knows the notes.\n  knowledge_sources: [keeper-notes]\n"
    )
    crew_level = "keeper:\n  role: Keeper\n  goal: Answer\n  backstory: Knows the notes.\n"
    missing = client.post(
        "/api/v1/crews",
        {"name": "lost", "agents_yaml": agent_level.replace("keeper-notes", "atlas"), "tasks_yaml": tasks},
        format="json",
    )
    assert missing.status_code == 400 and "knowledge bases this organization lacks: atlas" in missing.content.decode()
    for name, agents_yaml, config in (
        ("agent-level", agent_level, {}),
        ("crew-level", crew_level, {"knowledge_sources": ["keeper-notes"]}),
    ):
        crew = client.post(
            "/api/v1/crews",
            {"name": name, "agents_yaml": agents_yaml, "tasks_yaml": tasks, "config": config},
            format="json",
        )
        assert crew.status_code == 201, crew.content
        started = client.post("/api/v1/executions", {"crew_id": crew.json()["id"], "inputs": {}}, format="json")
        assert started.status_code == 202, started.content
        run = wait_for(
            lambda: Execution.objects.filter(
                pk=started.json()["execution_id"],  # noqa: B023
                status__in=["COMPLETED", "FAILED"],
            ).first(),
            60,
            message=f"the {name} crew run",
        )
        assert run.status == "COMPLETED", run.error
        assert "Marmalade" in json.dumps(run.result)
        cited = {c["chunk_id"] for c in run.result["citations"]}
        assert cited and cited <= chunk_ids, name
