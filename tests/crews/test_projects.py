"""crews/import (a CrewAI project zip), crews/{id}/export (the same layout), and the inputs check
at run create, as a client sees them."""

from __future__ import annotations

import io
import zipfile

import pytest

from apps.crews.models import Crew
from apps.runs.models import Execution
from tests.crews.conftest import make_agent, make_crew
from tests.crews.projects import HERE, zip_members, zip_project
from tests.helpers import assert_envelope

pytestmark = pytest.mark.django_db


def _upload(client, archive: bytes, **fields):
    return client.post("/api/v1/crews/import", {"file": io.BytesIO(archive), **fields}, format="multipart")


def _messages(body) -> list[str]:
    return [e["message"] for e in body["errors"]]


def test_a_crewai_template_project_imports_with_its_report(owner_client, member):
    response = _upload(owner_client, zip_project("latest_ai_development"))
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "Imported crew" and body["process"] == "sequential" and body["verbose"] is True
    report = body["report"]
    assert report["files"][-1] == "latest_ai_development/src/latest_ai_development/crew.py"
    assert "task reporting_task: output_file from crew.py" in report["mapped"]
    assert "crew: name 'Imported crew' (give `name`, or name it in crew.yaml)" in report["defaulted"]
    assert "agent researcher: llm → the crew's model, else the organization default" in report["defaulted"]
    crew = Crew.objects.for_org(member.organization).get(pk=body["id"])
    assert "output_file: report.md" in crew.tasks_yaml


def test_tasks_bound_in_crew_py_import_and_missing_tools_are_refused_unless_allowed(owner_client, member):
    refused = _upload(owner_client, zip_project("marketing_strategy"), name="Marketing")
    body = assert_envelope(refused, 400)
    [message] = [m for m in _messages(body) if "tools this organization lacks" in m]
    assert "scrape_website, serper_dev" in message and "allow_missing_tools=true" in message
    assert not Crew.objects.for_org(member.organization).exists()

    allowed = _upload(owner_client, zip_project("marketing_strategy"), name="Marketing", allow_missing_tools="true")
    assert allowed.status_code == 201, allowed.content
    report = allowed.json()["report"]
    assert report["missing_tools"] == ["scrape_website", "serper_dev"]
    assert any(
        d.startswith("agent lead_market_analyst: tools scrape_website, serper_dev left out")
        for d in report["defaulted"]
    )
    from apps.crews.specs import parse_crew

    crew = Crew.objects.get(pk=allowed.json()["id"])
    spec = parse_crew(crew.agents_yaml, crew.tasks_yaml, crew.process, crew.config)
    assert spec.valid and spec.planning
    assert [t.agent for t in spec.tasks] == [
        "lead_market_analyst",
        "chief_marketing_strategist",
        "chief_marketing_strategist",
    ]
    assert spec.tasks[2].output_schema["title"] == "MarketStrategy"


def test_a_project_with_keys_and_tools_it_cannot_honour_is_refused_naming_every_one(owner_client, member):
    body = assert_envelope(_upload(owner_client, zip_project("refused")), 400)
    text = "\n".join(_messages(body))
    for key in ("reasoning", "max_reasoning_attempts", "inject_date", "multimodal", "memory", "converter_cls"):
        assert f"`{key}` is not supported here" in text, key
    assert "unknown field 'favourite_colour'" in text
    # the same YAML through POST /crews: the same refusals, and the tool the organization lacks
    agents = (HERE / "refused/config/agents.yaml").read_text()
    tasks = (HERE / "refused/config/tasks.yaml").read_text()
    direct = assert_envelope(
        owner_client.post("/api/v1/crews", {"name": "R", "agents_yaml": agents, "tasks_yaml": tasks}, format="json"),
        400,
    )
    assert all(f"`{key}` is not supported here" in "\n".join(_messages(direct)) for key in ("reasoning", "memory"))
    fixed = (
        "\n".join(
            line
            for line in agents.splitlines()
            if not line.strip().startswith(
                ("reasoning", "max_reasoning", "inject", "multimodal", "memory", "favourite")
            )
        )
        + "\n"
    )
    tools = assert_envelope(
        owner_client.post("/api/v1/crews", {"name": "R", "agents_yaml": fixed, "tasks_yaml": TASKS}, format="json"), 400
    )
    assert _messages(tools) == ["tools this organization lacks: serper_dev (add them under /api/v1/tools first)"]


TASKS = "plan_task:\n  description: Make a plan for {goal}\n  expected_output: A plan\n  agent: planner\n"


def test_bad_archives_answer_a_clear_400(owner_client):
    body = assert_envelope(_upload(owner_client, zip_members({"../x/agents.yaml": "a: 1", "tasks.yaml": "t: 1"})), 400)
    assert "unsafe path" in _messages(body)[0]
    body = assert_envelope(_upload(owner_client, b"not a zip"), 400)
    assert "not a readable zip archive" in _messages(body)[0]
    body = assert_envelope(owner_client.post("/api/v1/crews/import", {"name": "x"}, format="multipart"), 400)
    assert body["errors"][0]["field"] == "file"


def test_export_is_the_project_zip_and_imports_back_unchanged(owner_client, member):
    crew = make_crew(
        member, name="Research Team", process="hierarchical", config={"planning": True, "manager_llm": "builtin"}
    )
    response = owner_client.get(f"/api/v1/crews/{crew.pk}/export")
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == 'attachment; filename="research_team.zip"'
    names = zipfile.ZipFile(io.BytesIO(response.content)).namelist()
    assert names == ["research_team/config/agents.yaml", "research_team/config/tasks.yaml", "research_team/crew.yaml"]
    again = _upload(owner_client, response.content, name="Copy")
    assert again.status_code == 201, again.content
    copy = Crew.objects.get(pk=again.json()["id"])
    assert (copy.agents_yaml, copy.tasks_yaml, copy.process, copy.config) == (
        crew.agents_yaml,
        crew.tasks_yaml,
        "hierarchical",
        {"planning": True, "manager_llm": "builtin"},
    )
    as_json = owner_client.get(f"/api/v1/crews/{crew.pk}/export", HTTP_ACCEPT="application/json")
    assert as_json["Content-Type"] == "application/json" and as_json.json()["files"]["agents.yaml"] == crew.agents_yaml
    missing = owner_client.get("/api/v1/crews/00000000-0000-4000-8000-000000000000/export")
    assert_envelope(missing, 404)
    assert missing["Content-Type"] == "application/json"


def test_a_run_whose_inputs_leave_placeholders_unfilled_is_refused_naming_each(owner_client, member):
    crew = make_crew(member)  # {topic} in the researcher's role/goal and the first task
    body = assert_envelope(
        owner_client.post("/api/v1/executions", {"crew_id": str(crew.pk), "inputs": {}}, format="json"), 400
    )
    assert body["errors"] == [
        {
            "field": "inputs",
            "message": "Missing input for the placeholder {topic}: give it in "
            "`inputs` (write {{ and }} for literal braces).",
        }
    ]
    inline = assert_envelope(
        owner_client.post(
            "/api/v1/executions",
            {
                "agents_yaml": "a:\n  role: R {who}\n  goal: G\n  backstory: B\n",
                "tasks_yaml": "t:\n  description: D {year} {{not_an_input}}\n  expected_output: O {topic}\n  agent: a\n",
                "inputs": {"topic": "AI"},
            },
            format="json",
        ),
        400,
    )
    assert "placeholders {who}, {year}:" in _messages(inline)[0]
    agent = make_agent(member)
    task = assert_envelope(
        owner_client.post(
            f"/api/v1/agents/{agent.pk}/task",
            {"description": "Summarise {doc} for {audience}", "inputs": {"doc": "x"}},
            format="json",
        ),
        400,
    )
    assert "{audience}" in _messages(task)[0] and "{doc}" not in _messages(task)[0]
    assert not Execution.objects.for_org(member.organization).exists()
    ok = owner_client.post("/api/v1/executions", {"crew_id": str(crew.pk), "inputs": {"topic": "AI"}}, format="json")
    assert ok.status_code == 202, ok.content


def test_debug_reports_missing_inputs_refused_keys_and_what_the_organization_lacks(owner_client):
    body = owner_client.post(
        "/api/v1/crews/debug",
        {
            "agents_yaml": "a:\n  role: R {who}\n  goal: G\n  backstory: B\n  knowledge_sources: [handbook]\n",
            "tasks_yaml": "t:\n  description: D {topic}\n  expected_output: O\n  agent: a\n  callback: on-done\n",
            "inputs": {"topic": "AI"},
        },
        format="json",
    ).json()
    assert body["valid"] is False and body["missing_inputs"] == ["who"] and body["placeholders"] == ["topic", "who"]
    messages = [e["message"] for e in body["errors"]]
    assert "`knowledge_sources` name knowledge bases this organization lacks: handbook" in messages
    assert "`callback` names no active webhook subscription of this organization: on-done" in messages
    assert any(m.startswith("Missing input for the placeholder {who}") for m in messages)
    refused = owner_client.post(
        "/api/v1/crews/debug",
        {
            "agents_yaml": "a:\n  role: R\n  goal: G\n  backstory: B\n  reasoning: true\n",
            "tasks_yaml": "t:\n  description: D\n  expected_output: O\n  agent: a\n",
        },
        format="json",
    ).json()
    assert refused["errors"] == [
        {
            "field": "agents_yaml",
            "line": 5,
            "message": "agent 'a': `reasoning` is not "
            "supported here: the reflect-and-plan step before a task is not run",
        }
    ]


def test_knowledge_sources_name_the_organization_knowledge_bases(owner_client, member):
    from apps.knowledge.models import KnowledgeBase

    KnowledgeBase.objects.create(organization=member.organization, name="handbook")
    created = owner_client.post(
        "/api/v1/crews",
        {
            "name": "K",
            "agents_yaml": "a:\n  role: R\n  goal: G\n  backstory: B\n  knowledge_sources: [handbook]\n",
            "tasks_yaml": "t:\n  description: D\n  expected_output: O\n  agent: a\n",
        },
        format="json",
    )
    assert created.status_code == 201, created.content
