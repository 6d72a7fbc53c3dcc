"""Every CrewAI key is honoured (parsed into the spec under CrewAI's name) or refused by name with
why; ``{{``/``}}`` are literal braces; crew.py and crew.jsonc are read without running anything."""

from __future__ import annotations

import ast
import dataclasses
import json

import pytest

from apps.crews import crewpy, keys, projects, specs
from tests.crews.projects import zip_members, zip_project

AGENT = "a:\n  role: R\n  goal: G\n  backstory: B\n"
TASK = "t:\n  description: D\n  expected_output: O\n  agent: a\n"


def test_every_key_the_issue_names_is_in_the_table_and_every_honoured_one_is_a_spec_field():
    assert set(keys.ISSUE_AGENT_KEYS) <= set(keys.AGENT_KEYS)
    assert set(keys.ISSUE_TASK_KEYS) <= set(keys.TASK_KEYS)
    agent_fields = {f.name for f in dataclasses.fields(specs.AgentSpec)}
    task_fields = {f.name for f in dataclasses.fields(specs.TaskSpec)}
    crew_fields = {f.name for f in dataclasses.fields(specs.CrewSpec)}
    # the names the runner reads (the brief's list), all present under CrewAI's spelling
    assert set(keys.ISSUE_AGENT_KEYS) <= agent_fields
    assert {
        "async_execution",
        "output_json",
        "output_pydantic",
        "output_schema",
        "output_file",
        "create_directory",
        "markdown",
        "guardrail",
        "guardrail_max_retries",
        "callback",
        "config",
    } <= task_fields
    assert {"process", "planning", "manager_llm", "manager_agent", "memory"} <= crew_fields
    for key in keys.AGENT_KEYS.values():
        assert not key.honoured or key.name in agent_fields, key.name
    for key in keys.TASK_KEYS.values():
        assert not key.honoured or key.name in task_fields, key.name


def _values():
    """A value of each shape that is not a refused key's accepted one."""
    return {
        "text": "x",
        "bool": True,
        "posint": 3,
        "count": 7,
        "names": ["n"],
        "mapping": {"k": 1},
        "schema": {"type": "object"},
        "model": "builtin",
    }


@pytest.mark.parametrize("kind", ["agent", "task"])
def test_each_key_is_honoured_into_the_spec_or_refused_naming_it_and_why(kind):
    table = keys.AGENT_KEYS if kind == "agent" else keys.TASK_KEYS
    skip = {
        "role",
        "goal",
        "backstory",
        "description",
        "expected_output",
        "agent",
        "agent_id",
        "context",
        "approval",
        "config",
        "human_input",
        "guardrail",
    }
    for key in table.values():
        if key.name in skip:
            continue
        value = _values()[key.shape]
        if key.accepts and value in key.accepts:
            value = {True: False, False: True}.get(value, 99) if isinstance(value, bool) else "unsafe"
        line = f"  {key.name}: {json.dumps(value)}\n"
        spec = specs.parse_crew(AGENT + (line if kind == "agent" else ""), TASK + (line if kind == "task" else ""))
        if key.honoured:
            assert spec.valid, (key.name, spec.errors)
            entry = spec.agents[0] if kind == "agent" else spec.tasks[0]
            assert getattr(entry, key.name) == value, key.name
        else:
            [error] = spec.errors
            assert f"`{key.name}` is not supported here: {key.doc}" in error.message and error.line == 5, error


def test_refused_keys_parse_at_the_value_that_asks_for_nothing_missing():
    agents = AGENT + "  reasoning: false\n  memory: false\n  multimodal: false\n  code_execution_mode: safe\n"
    spec = specs.parse_crew(agents, TASK)
    assert spec.valid, spec.errors
    assert spec.agents[0].reasoning is False and spec.agents[0].code_execution_mode == "safe"


def test_unknown_keys_bad_values_and_task_config_are_reported_by_name():
    agents = AGENT + "  max_iter: -1\n  favourite: tea\n"
    tasks = (
        TASK + "  config: {markdown: true, output_file: 'out/{topic}.md', colour: red}\n  guardrail: \"max_words:x\"\n"
    )
    spec = specs.parse_crew(agents, tasks)
    messages = [e.as_envelope_error()["message"] for e in spec.errors]
    assert "line 5: agent 'a': `max_iter` must be an integer ≥ 0" in messages
    assert any(m.startswith("line 6: agent 'a': unknown field 'favourite'") for m in messages)
    assert any(m.startswith("line 5: task 't': unknown field 'colour'") for m in messages)
    assert "line 6: task 't': `guardrail` max_words: needs a positive integer" in messages
    task = spec.tasks[0]
    assert task.markdown is True and task.output_file == "out/{topic}.md" and "topic" in spec.placeholders


def test_output_schema_must_be_a_json_schema_and_only_one_output_key_is_given():
    bad = specs.parse_crew(AGENT, TASK + "  output_schema: {type: objekt}\n")
    assert "`output_schema` is not a valid JSON Schema" in bad.errors[0].message
    both = specs.parse_crew(AGENT, TASK + "  output_json: report\n  output_schema: {type: object}\n")
    assert "give one of `output_json`, `output_pydantic` and `output_schema`" in both.errors[0].message


def test_crew_level_keys_come_from_the_crew_config():
    spec = specs.parse_crew(
        AGENT, TASK, "hierarchical", {"planning": True, "manager_agent": "a", "manager_llm": "builtin"}
    )
    assert spec.valid and spec.planning and spec.manager_agent == "a" and spec.manager_llm == "builtin"
    refused = specs.parse_crew(AGENT, TASK, "sequential", {"memory": True, "manager_agent": "zz"})
    messages = [e.message for e in refused.errors]
    assert any("`memory` is not supported here" in m for m in messages)
    assert "crew: `manager_agent` names unknown agent 'zz'" in messages
    assert "crew: `manager_llm` / `manager_agent` need the hierarchical process" in messages


def test_placeholders_escape_braces_and_missing_inputs_are_all_named():
    assert specs.interpolate('{{topic}} is {topic}; JSON {{"a": 1}}', {"topic": "AI"}) == (
        '{topic} is AI; JSON {"a": 1}'
    )
    assert specs.interpolate("{a}", {"a": "{b}"}) == "{b}"  # a value is never read as a template
    spec = specs.parse_crew(
        AGENT.replace("role: R", "role: R {who}"),
        TASK.replace("description: D", "description: D {topic} {{literal}} {year}"),
    )
    assert spec.placeholders == ["topic", "who", "year"]
    assert spec.missing_inputs({"topic": "AI"}) == ["who", "year"]


# --- crew.py, statically ---------------------------------------------------------------------------


def test_a_pydantic_model_becomes_a_json_schema_from_its_annotations():
    source = '''
from typing import List, Literal, Optional
from pydantic import BaseModel, Field

class Source(BaseModel):
    url: str
    title: Optional[str] = None

class Report(BaseModel):
    """A report."""
    headline: str = Field(..., description="The headline")
    score: float
    tags: List[str] = []
    mood: Literal["good", "bad"]
    sources: list[Source]
    extra: dict[str, int] | None = None
'''
    models = crewpy.pydantic_models({"m.py": source})
    schema = crewpy.model_schema(models["Report"], models)
    assert schema["required"] == ["headline", "score", "mood", "sources"]
    props = schema["properties"]
    assert props["headline"] == {"type": "string", "description": "The headline"}
    assert props["tags"] == {"type": "array", "items": {"type": "string"}}
    assert props["mood"] == {"enum": ["good", "bad"]}
    assert props["sources"]["items"]["properties"]["title"] == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    import jsonschema

    jsonschema.validate({"headline": "h", "score": 1.5, "mood": "good", "sources": [{"url": "u"}]}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"headline": "h", "score": "high", "mood": "good", "sources": []}, schema)


def test_crew_py_binds_agents_context_and_output_models_without_running_it():
    project = projects.read_project(zip_project("marketing_strategy"))
    tasks = project.tasks
    assert list(tasks) == ["research_task", "project_understanding_task", "marketing_strategy_task"]
    assert tasks["research_task"]["agent"] == "lead_market_analyst"
    assert tasks["marketing_strategy_task"]["context"] == ["research_task", "project_understanding_task"]
    assert tasks["marketing_strategy_task"]["output_schema"]["title"] == "MarketStrategy"
    assert tasks["research_task"]["output_schema"]["required"] == ["summary"]
    assert project.agents["lead_market_analyst"]["tools"] == ["serper_dev", "scrape_website"]
    assert project.crew == {"process": "sequential", "verbose": True, "planning": True}
    fields = projects.project_fields(project)
    spec = specs.parse_crew(fields["agents_yaml"], fields["tasks_yaml"], fields["process"], fields["config"])
    assert spec.valid, spec.errors
    assert spec.planning and spec.tasks[2].output_schema["properties"]["KPIs"]["type"] == "array"


def test_crew_py_code_that_needs_running_is_refused_by_name():
    crew_py = """
from crewai import Agent, Task, Crew
from crewai.project import CrewBase, agent, task, crew

def check(output):
    return True, output

@CrewBase
class C:
    @agent
    def a(self) -> Agent:
        return Agent(config=self.agents_config["a"], step_callback=print)
    @task
    def t(self) -> Task:
        return Task(config=self.tasks_config["t"], agent=self.a(), guardrail=check, output_pydantic=Missing)
    @crew
    def crew(self) -> Crew:
        return Crew(agents=self.agents, tasks=self.tasks)
"""
    archive = zip_members(
        {"p/config/agents.yaml": AGENT, "p/config/tasks.yaml": TASK.replace("  agent: a\n", ""), "p/crew.py": crew_py}
    )
    with pytest.raises(projects.ProjectError) as raised:
        projects.read_project(archive)
    messages = [e["message"] for e in raised.value.errors]
    assert "agent a: `step_callback=print` is Python code, not a value (see docs/crewai.md for what to use here)" in (
        messages
    )
    assert any(m.startswith("task t: `guardrail=check` is Python code") for m in messages)
    assert "task t: `output_pydantic=Missing` names no pydantic model found in the project" in messages
    broken = zip_members({"agents.yaml": AGENT, "tasks.yaml": TASK, "crew.py": "def (:\n"})
    with pytest.raises(projects.ProjectError, match="Python syntax error on line 1"):
        projects.read_project(broken)
    ast.parse(crew_py)  # the fixture itself is valid Python: what was refused is what it asks for


def test_crew_jsonc_takes_comments_and_trailing_commas_and_refuses_unknown_keys():
    project = projects.read_project(zip_project("trip_planner"))
    assert project.crew == {
        "name": "Trip planner",
        "process": "hierarchical",
        "manager_llm": "builtin",
        "planning": False,
        "memory": False,
    }
    assert projects.parse_jsonc('{"a": "// not a comment", /* c */ "b": [1, 2,],}') == {
        "a": "// not a comment",
        "b": [1, 2],
    }
    archive = zip_members(
        {"agents.yaml": AGENT, "tasks.yaml": TASK, "crew.jsonc": '{"process": "sequential", "colour": "red"}'}
    )
    with pytest.raises(projects.ProjectError, match="unknown crew key 'colour'"):
        projects.read_project(archive)


# --- zip safety --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "members, message",
    [
        ({"../evil/agents.yaml": AGENT, "tasks.yaml": TASK}, "unsafe path"),
        ({"/etc/agents.yaml": AGENT, "tasks.yaml": TASK}, "unsafe path"),
        ({f"f{i}.txt": "" for i in range(projects.MAX_MEMBERS + 1)}, "members; at most"),
        ({"agents.yaml": " " * (projects.MAX_MEMBER_BYTES + 1), "tasks.yaml": TASK}, "is over"),
        ({"a/agents.yaml": AGENT, "b/agents.yaml": AGENT, "tasks.yaml": TASK}, "more than one agents.yaml"),
        ({"tasks.yaml": TASK}, "has no agents.yaml"),
        ({"agents.yaml": "- a list\n", "tasks.yaml": TASK}, "must be a mapping"),
    ],
)
def test_unsafe_or_unreadable_archives_are_refused_clearly(members, message):
    with pytest.raises(projects.ProjectError, match=message):
        projects.read_project(zip_members(members))


def test_a_zip_bomb_not_a_zip_and_symlinks_are_refused():
    bomb = zip_members({"agents.yaml": AGENT, "tasks.yaml": TASK, "big.bin": b"\0" * (projects.MAX_TOTAL_BYTES + 1)})
    assert len(bomb) < projects.MAX_ARCHIVE_BYTES
    with pytest.raises(projects.ProjectError, match="unpacks to more than"):
        projects.read_project(bomb)
    with pytest.raises(projects.ProjectError, match="not a readable zip archive"):
        projects.read_project(b"PK\x03\x04 definitely not")
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        link = zipfile.ZipInfo("agents.yaml")
        link.external_attr = 0o120777 << 16
        archive.writestr(link, "/etc/passwd")
    with pytest.raises(projects.ProjectError, match="symbolic link"):
        projects.read_project(buffer.getvalue())


def test_export_writes_the_layout_the_import_reads_back():
    archive = projects.write_project(
        name="My Crew",
        description="d",
        process="hierarchical",
        model="builtin",
        verbose=False,
        config={"planning": True, "manager_llm": "builtin", "other": 1},
        agents_yaml=AGENT,
        tasks_yaml=TASK,
    )
    project = projects.read_project(archive)
    assert project.agents_text == AGENT and project.tasks_text == TASK
    assert project.crew == {
        "name": "My Crew",
        "description": "d",
        "process": "hierarchical",
        "verbose": False,
        "model": "builtin",
        "planning": True,
        "manager_llm": "builtin",
    }
    assert project.report.files == ["my_crew/crew.yaml", "my_crew/config/agents.yaml", "my_crew/config/tasks.yaml"]


def test_docs_crewai_has_a_row_for_every_key_with_its_status():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "crewai.md").read_text()
    for row in keys.table():
        status = "honoured" if row["honoured"] else "refused"
        assert any(
            line.startswith(f"| `{row['key']}` | {status}") and row["doc"].replace("|", "/") in line
            for line in text.splitlines()
        ), row["key"]
