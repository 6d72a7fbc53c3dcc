"""CrewAI YAML validation: every problem reported with its line."""

from apps.crews import specs

AGENTS = """\
researcher:
  role: "{topic} Senior Researcher"
  goal: Uncover developments in {topic}
  backstory: A seasoned researcher.
writer:
  role: Writer
  goal: Write clearly
  backstory: A journalist.
"""

TASKS = """\
research_task:
  description: Research {topic}
  expected_output: Ten bullet points
  agent: researcher
write_task:
  description: Write the article
  expected_output: An article
  agent: writer
  context: [research_task]
"""


def test_a_valid_crew_parses_in_order_with_its_placeholders():
    spec = specs.parse_crew(AGENTS, TASKS)
    assert spec.valid, spec.errors
    assert [a.key for a in spec.agents] == ["researcher", "writer"]
    assert [t.key for t in spec.tasks] == ["research_task", "write_task"]
    assert spec.tasks[1].context == ["research_task"]
    assert spec.placeholders == ["topic"]


def test_unknown_agent_in_a_task_is_reported_on_its_line():
    tasks = TASKS.replace("agent: writer", "agent: editor")
    spec = specs.parse_crew(AGENTS, tasks)
    [error] = spec.errors
    assert error.field == "tasks_yaml" and error.line == 8
    assert "unknown agent 'editor'" in error.message and "researcher, writer" in error.message


def test_missing_fields_are_reported_with_the_entry_line():
    agents = AGENTS.replace("  backstory: A journalist.\n", "")
    tasks = TASKS.replace("  expected_output: An article\n", "")
    spec = specs.parse_crew(agents, tasks)
    messages = {(e.field, e.line, e.message) for e in spec.errors}
    assert ("agents_yaml", 5, "agent 'writer' is missing backstory") in messages
    assert ("tasks_yaml", 5, "task 'write_task' is missing expected_output") in messages


def test_yaml_syntax_errors_carry_their_line():
    broken = "researcher:\n  role: x\n  goal: [unclosed\n  backstory: y\n"
    spec = specs.parse_crew(broken, TASKS)
    syntax = [e for e in spec.errors if e.field == "agents_yaml"]
    assert syntax and syntax[0].message.startswith("YAML syntax error") and syntax[0].line in (3, 4, 5)
    # tasks cannot be checked against agents that did not parse: no spurious "unknown agent" errors
    assert not [e for e in spec.errors if e.field == "tasks_yaml"]


def test_context_must_name_an_earlier_task_and_unknown_fields_are_refused():
    tasks = TASKS.replace("context: [research_task]", "context: [later_task]") + "  colour: blue\n"
    spec = specs.parse_crew(AGENTS, tasks)
    messages = [e.as_envelope_error()["message"] for e in spec.errors]
    assert any("line 9: task 'write_task': context names 'later_task'" in m for m in messages), messages
    assert any("line 10: task 'write_task': unknown field 'colour'" in m for m in messages), messages


def test_duplicates_non_mappings_and_empty_documents():
    spec = specs.parse_crew("a:\n  role: r\n  goal: g\n  backstory: b\na:\n  role: r\n", "- just a list\n")
    assert any(e.line == 5 and "defined twice (first on line 1)" in e.message for e in spec.errors)
    assert any(e.field == "tasks_yaml" and "must be a mapping" in e.message for e in spec.errors)
    assert any("is empty" in e.message for e in specs.parse_crew("", "").errors)


def test_hierarchical_tasks_may_leave_the_agent_to_the_manager():
    tasks = TASKS.replace("  agent: researcher\n", "")
    assert not specs.parse_crew(AGENTS, tasks, "hierarchical").errors
    assert specs.parse_crew(AGENTS, tasks, "sequential").errors[0].message == (
        "task 'research_task' names no agent (required by the sequential process)"
    )


def test_interpolation_and_the_combined_document_round_trip():
    assert specs.interpolate("About {topic} and {other}", {"topic": "AI"}) == "About AI and {other}"
    import yaml

    combined = specs.dump_yaml({"name": "C", "agents": yaml.safe_load(AGENTS), "tasks": yaml.safe_load(TASKS)})
    fields, errors = specs.parse_combined(combined)
    assert not errors and fields["name"] == "C"
    assert specs.parse_crew(fields["agents_yaml"], fields["tasks_yaml"]).valid
    _, errors = specs.parse_combined("name: x\nagents: [1]\n")
    assert {e["field"] for e in errors} == {"crew_yaml.agents", "crew_yaml.tasks"}
