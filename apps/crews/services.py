"""Writes of the crews app: crews, orchestrations and task definitions. Their runs are created
through the run engine's ``apps.runs.services.execution_create``."""

from __future__ import annotations

import uuid

import yaml
from django.db import transaction
from rest_framework import exceptions

from apps.agents.models import Agent
from apps.agents.selectors import tool_names
from apps.audit.services import audit_record, snapshot
from apps.crews import projects, specs
from apps.crews.models import Crew, Orchestration, Pattern, TaskDefinition
from apps.crews.projects import ProjectError
from apps.events.services import publish
from apps.knowledge.models import KnowledgeBase
from apps.runs.models import Execution, ExecutionKind
from apps.runs.services import execution_create
from apps.schemas.selectors import schema_document
from apps.webhooks.selectors import webhook_by_reference


def _actor_or_none(actor):
    return actor if getattr(actor, "pk", None) and getattr(actor, "is_authenticated", False) else None


# --- crews -------------------------------------------------------------------------------------

CREW_FIELDS = ("name", "description", "agents_yaml", "tasks_yaml", "model", "process", "verbose", "config")


def crew_validate(
    *, agents_yaml: str, tasks_yaml: str, process: str = "sequential", config: dict | None = None
) -> specs.CrewSpec:
    return specs.parse_crew(agents_yaml, tasks_yaml, process, config)


def _raise_spec_errors(spec: specs.CrewSpec) -> None:
    if spec.errors:
        detail: dict[str, list[str]] = {}
        for error in spec.errors:
            detail.setdefault(error.field, []).append(error.as_envelope_error()["message"])
        raise exceptions.ValidationError(detail)


def crew_missing_tools(*, organization, spec: specs.CrewSpec) -> list[str]:
    known = tool_names(organization=organization)
    return [name for name in spec.tool_names if name not in known]


def crew_organization_problems(*, organization, spec: specs.CrewSpec) -> dict[str, list[str]]:
    """What the crew names that the organization lacks: tools, knowledge bases (``knowledge_sources``)
    and webhook subscriptions (``callback``), by the field that names them."""
    problems: dict[str, list[str]] = {}
    if missing := crew_missing_tools(organization=organization, spec=spec):
        problems.setdefault("agents_yaml", []).append(
            f"tools this organization lacks: {', '.join(missing)} (add them under /api/v1/tools first)"
        )
    if spec.knowledge_sources:
        known = set(
            KnowledgeBase.objects.for_org(organization)
            .filter(name__in=spec.knowledge_sources)
            .values_list("name", flat=True)
        )
        if missing := [n for n in spec.knowledge_sources if n not in known]:
            problems.setdefault("agents_yaml", []).append(
                f"`knowledge_sources` name knowledge bases this organization lacks: {', '.join(missing)}"
            )
    refs = sorted({ref for task in spec.tasks for ref in (task.output_json, task.output_pydantic) if ref})
    if missing := [ref for ref in refs if schema_document(organization=organization, reference=ref) is None]:
        problems.setdefault("tasks_yaml", []).append(
            f"`output_json`/`output_pydantic` name JSON Schemas this organization lacks: {', '.join(missing)} "
            "(add them under /api/v1/schemas first, or give the schema inline as `output_schema`)"
        )
    if spec.callbacks:  # by name or id, as the run resolves it
        missing = [n for n in spec.callbacks if webhook_by_reference(organization=organization, reference=n) is None]
        if missing:
            problems.setdefault("tasks_yaml", []).append(
                f"`callback` names no active webhook subscription of this organization: {', '.join(missing)}"
            )
    return problems


def crew_check(
    *,
    organization,
    agents_yaml: str,
    tasks_yaml: str,
    process: str = "sequential",
    config: dict | None = None,
    inputs: dict | None = None,
) -> specs.CrewSpec:
    """The crew's spec, or a 400 naming every problem: YAML, refused keys, what the organization
    lacks and (with ``inputs``) every placeholder the inputs leave unfilled."""
    spec = crew_validate(agents_yaml=agents_yaml, tasks_yaml=tasks_yaml, process=process, config=config)
    _raise_spec_errors(spec)
    problems = crew_organization_problems(organization=organization, spec=spec)
    if inputs is not None and (missing := spec.missing_inputs(inputs)):
        problems["inputs"] = [missing_inputs_message(missing)]
    if problems:
        raise exceptions.ValidationError(problems)
    return spec


def missing_inputs_message(missing: list[str]) -> str:
    names = ", ".join("{" + name + "}" for name in missing)
    return (
        f"Missing input{'s' if len(missing) > 1 else ''} for the placeholder{'s' if len(missing) > 1 else ''} "
        f"{names}: give {'them' if len(missing) > 1 else 'it'} in `inputs` (write {{{{ and }}}} for literal "
        "braces)."
    )


def check_inputs(*, texts, inputs: dict | None) -> None:
    """A 400 naming every ``{placeholder}`` of ``texts`` the inputs leave unfilled."""
    if missing := specs.missing_inputs(texts, inputs or {}):
        raise exceptions.ValidationError({"inputs": [missing_inputs_message(missing)]})


def crew_create(*, organization, actor, data: dict) -> Crew:
    values = {key: data[key] for key in CREW_FIELDS if key in data}
    crew_check(
        organization=organization,
        agents_yaml=values.get("agents_yaml", ""),
        tasks_yaml=values.get("tasks_yaml", ""),
        process=values.get("process") or "sequential",
        config=values.get("config"),
    )
    with transaction.atomic():
        crew = Crew.objects.create(organization=organization, created_by=_actor_or_none(actor), **values)
        audit_record(organization=organization, actor=actor, action="crew.create", instance=crew, after=snapshot(crew))
        publish(
            organization, "crew.created", {"crew_id": str(crew.pk), "name": crew.name}, actor=actor, component="crews"
        )
    return crew


def crew_update(*, crew: Crew, actor, data: dict) -> Crew:
    values = {key: data[key] for key in CREW_FIELDS if key in data}
    if {"agents_yaml", "tasks_yaml", "process", "config"} & set(values):
        crew_check(
            organization=crew.organization_id,
            agents_yaml=values.get("agents_yaml", crew.agents_yaml),
            tasks_yaml=values.get("tasks_yaml", crew.tasks_yaml),
            process=values.get("process", crew.process),
            config=values.get("config", crew.config),
        )
    with transaction.atomic():
        crew = Crew.objects.select_for_update().get(pk=crew.pk)
        before = snapshot(crew)
        for key, value in values.items():
            setattr(crew, key, value)
        crew.save()
        audit_record(
            organization=crew.organization,
            actor=actor,
            action="crew.update",
            instance=crew,
            before=before,
            after=snapshot(crew),
        )
        publish(
            crew.organization_id,
            "crew.updated",
            {"crew_id": str(crew.pk), "changed_fields": sorted(values)},
            actor=actor,
            component="crews",
        )
    return crew


def crew_delete(*, crew: Crew, actor) -> None:
    with transaction.atomic():
        audit_record(
            organization=crew.organization, actor=actor, action="crew.delete", instance=crew, before=snapshot(crew)
        )
        publish(crew.organization_id, "crew.deleted", {"crew_id": str(crew.pk)}, actor=actor, component="crews")
        crew.delete()


def crew_export(*, crew: Crew) -> dict:
    """The crew as CrewAI files plus one combined document that ``crews/import`` reads back."""
    agents = yaml.safe_load(crew.agents_yaml) or {}
    tasks = yaml.safe_load(crew.tasks_yaml) or {}
    combined = {
        "name": crew.name,
        "description": crew.description,
        "process": crew.process,
        "model": crew.model,
        "agents": agents,
        "tasks": tasks,
    }
    return {
        "name": crew.name,
        "description": crew.description,
        "process": crew.process,
        "model": crew.model,
        "agents_yaml": crew.agents_yaml,
        "tasks_yaml": crew.tasks_yaml,
        "files": {"agents.yaml": crew.agents_yaml, "tasks.yaml": crew.tasks_yaml},
        "crew_yaml": specs.dump_yaml(combined),
    }


def crew_import(*, organization, actor, data: dict) -> Crew:
    values = dict(data)
    combined = values.pop("crew_yaml", None)
    if combined:
        fields, errors = specs.parse_combined(combined)
        if fields is None:  # not parsed: the errors say why
            raise exceptions.ValidationError({e["field"]: [e["message"]] for e in errors})
        for key, value in fields.items():
            values.setdefault(key, value)
    if not values.get("agents_yaml") or not values.get("tasks_yaml"):
        raise exceptions.ValidationError({"crew_yaml": ["Give `crew_yaml`, or both `agents_yaml` and `tasks_yaml`."]})
    if not values.get("name"):
        raise exceptions.ValidationError({"name": ["This field is required (in the body or in crew_yaml)."]})
    return crew_create(organization=organization, actor=actor, data=values)


def _project_or_400(call, *args, **kwargs):
    try:
        return call(*args, **kwargs)
    except ProjectError as exc:
        detail: dict[str, list[str]] = {}
        for error in exc.errors:
            detail.setdefault(error["field"], []).append(error["message"])
        raise exceptions.ValidationError(detail)


def crew_import_project(
    *, organization, actor, archive: bytes, name: str = "", model: str | None = None, allow_missing_tools: bool = False
) -> tuple[Crew, dict]:
    """A crew from a CrewAI project zip, and the report of what was mapped and defaulted. Anything
    refused (a key, Python code crew.py needs run, a tool the organization lacks) is a 400 naming it."""
    project = _project_or_400(projects.read_project, archive)
    report = project.report
    errors: list[specs.SpecError] = []
    specs.crew_settings(project.crew, errors, field_name="crew", strict=True)
    fields = projects.project_fields(project)
    spec = crew_validate(
        agents_yaml=fields["agents_yaml"],
        tasks_yaml=fields["tasks_yaml"],
        process=fields.get("process") or "sequential",
        config=fields.get("config"),
    )
    _raise_spec_errors(specs.CrewSpec(agents=[], tasks=[], errors=errors + spec.errors))
    missing = crew_missing_tools(organization=organization, spec=spec)
    report.missing_tools = missing
    if missing and not allow_missing_tools:
        raise exceptions.ValidationError(
            {
                "tools": [
                    f"The project names tools this organization lacks: {', '.join(missing)}. Add them under /api/v1/tools, "
                    "or import with allow_missing_tools=true to leave them out."
                ]
            }
        )
    if missing:
        projects.drop_tools(project, missing)
        fields = projects.project_fields(project)
    if name:
        fields["name"] = name
    elif not fields.get("name"):
        fields["name"] = "Imported crew"
        report.defaulted.append("crew: name 'Imported crew' (give `name`, or name it in crew.yaml)")
    if model is not None:
        fields["model"] = model
    for agent in spec.agents:
        if not agent.llm:
            report.defaulted.append(f"agent {agent.key}: llm → the crew's model, else the organization default")
    report.mapped.insert(0, f"{len(spec.agents)} agents, {len(project.tasks)} tasks")
    crew = crew_create(organization=organization, actor=actor, data=fields)
    return crew, report.as_dict()


def crew_export_archive(*, crew: Crew) -> bytes:
    return projects.write_project(
        name=crew.name,
        description=crew.description,
        process=crew.process,
        model=crew.model,
        verbose=crew.verbose,
        config=crew.config,
        agents_yaml=crew.agents_yaml,
        tasks_yaml=crew.tasks_yaml,
    )


# --- orchestrations ----------------------------------------------------------------------------

ORCHESTRATION_FIELDS = ("name", "description", "pattern", "config_yaml", "agent_ids", "status")
#: agents a pattern needs at least (the first plays the supervisor/router/manager where there is one)
PATTERN_MIN_AGENTS = {
    Pattern.SEQUENTIAL: 1,
    Pattern.PARALLEL: 1,
    Pattern.HIERARCHICAL: 2,
    Pattern.SUPERVISOR_WORKER: 2,
    Pattern.ROUTER: 2,
    Pattern.ENSEMBLE: 2,
}


def parse_config_yaml(text: str, *, field: str = "config_yaml") -> dict:
    if not text or not text.strip():
        return {}
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise exceptions.ValidationError({field: [f"{where}YAML syntax error: {getattr(exc, 'problem', None) or exc}"]})
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise exceptions.ValidationError({field: ["must be a YAML mapping"]})
    return value


def _check_agent_ids(*, organization, agent_ids) -> list[uuid.UUID]:
    ids = list(dict.fromkeys(uuid.UUID(str(a)) for a in agent_ids or []))
    known = set(Agent.objects.for_org(organization).filter(pk__in=ids).values_list("pk", flat=True))
    errors = {f"agent_ids[{i}]": [f"No agent {a} in this organization."] for i, a in enumerate(ids) if a not in known}
    if errors:
        raise exceptions.ValidationError(errors)
    return ids


def orchestration_create(*, organization, actor, data: dict) -> Orchestration:
    values = {key: data[key] for key in ORCHESTRATION_FIELDS if key in data}
    parse_config_yaml(values.get("config_yaml", ""))
    values["agent_ids"] = _check_agent_ids(organization=organization, agent_ids=values.get("agent_ids"))
    with transaction.atomic():
        orchestration = Orchestration.objects.create(
            organization=organization, created_by=_actor_or_none(actor), **values
        )
        audit_record(
            organization=organization,
            actor=actor,
            action="orchestration.create",
            instance=orchestration,
            after=snapshot(orchestration),
        )
        publish(
            organization,
            "orchestration.created",
            {"orchestration_id": str(orchestration.pk), "pattern": orchestration.pattern},
            actor=actor,
            component="crews",
        )
    return orchestration


def orchestration_update(*, orchestration: Orchestration, actor, data: dict) -> Orchestration:
    values = {key: data[key] for key in ORCHESTRATION_FIELDS if key in data}
    if "config_yaml" in values:
        parse_config_yaml(values["config_yaml"])
    if "agent_ids" in values:
        values["agent_ids"] = _check_agent_ids(
            organization=orchestration.organization_id, agent_ids=values["agent_ids"]
        )
    with transaction.atomic():
        orchestration = Orchestration.objects.select_for_update().get(pk=orchestration.pk)
        before = snapshot(orchestration)
        for key, value in values.items():
            setattr(orchestration, key, value)
        orchestration.save()
        audit_record(
            organization=orchestration.organization,
            actor=actor,
            action="orchestration.update",
            instance=orchestration,
            before=before,
            after=snapshot(orchestration),
        )
    return orchestration


def orchestration_delete(*, orchestration: Orchestration, actor) -> None:
    with transaction.atomic():
        audit_record(
            organization=orchestration.organization,
            actor=actor,
            action="orchestration.delete",
            instance=orchestration,
            before=snapshot(orchestration),
        )
        orchestration.delete()


def orchestration_start(
    *, orchestration: Orchestration, actor, inputs: dict, params: dict | None = None, priority: int = 5
) -> Execution:
    minimum = PATTERN_MIN_AGENTS[Pattern(orchestration.pattern)]
    ids = list(orchestration.agent_ids or [])
    if len(ids) < minimum:
        raise exceptions.ValidationError(
            {
                "agent_ids": [
                    f"The {orchestration.pattern} pattern needs at least {minimum} agent{'s' if minimum > 1 else ''}; "
                    f"this orchestration has {len(ids)}."
                ]
            }
        )
    present = set(Agent.objects.for_org(orchestration.organization_id).filter(pk__in=ids).values_list("pk", flat=True))
    missing = [str(i) for i in ids if i not in present]
    if missing:
        raise exceptions.ValidationError({"agent_ids": [f"Agents no longer exist: {', '.join(missing)}."]})
    config = parse_config_yaml(orchestration.config_yaml)
    definition = {
        "pattern": orchestration.pattern,
        "agent_ids": [str(i) for i in ids],
        "config": config,
        "name": orchestration.name,
    }
    return execution_create(
        organization=orchestration.organization,
        actor=actor,
        kind=ExecutionKind.ORCHESTRATION,
        run_name=f"{orchestration.name} ({orchestration.pattern})",
        orchestration=orchestration,
        inputs=inputs,
        definition=definition,
        params=params,
        priority=priority,
        model=str(config.get("model") or ""),
    )


# --- task definitions --------------------------------------------------------------------------

TASK_FIELDS = ("name", "description", "expected_output", "agent", "tools", "context", "async_execution", "config")
TASK_DEFAULTS = {"expected_output": "", "agent": "", "tools": [], "context": [], "async_execution": False, "config": {}}


def task_definition_create(*, organization, actor, data: dict) -> TaskDefinition:
    values = {key: data[key] for key in TASK_FIELDS if key in data}
    with transaction.atomic():
        task = TaskDefinition.objects.create(organization=organization, created_by=_actor_or_none(actor), **values)
        audit_record(organization=organization, actor=actor, action="task.create", instance=task, after=snapshot(task))
    return task


def task_definition_update(*, task: TaskDefinition, actor, data: dict, replace: bool = False) -> TaskDefinition:
    """Partial update; with ``replace`` every field not given goes back to its default."""
    values = {key: data[key] for key in TASK_FIELDS if key in data}
    if replace:
        values = {**TASK_DEFAULTS, **values}
    with transaction.atomic():
        task = TaskDefinition.objects.select_for_update().get(pk=task.pk)
        before = snapshot(task)
        for key, value in values.items():
            setattr(task, key, value)
        task.save()
        audit_record(
            organization=task.organization,
            actor=actor,
            action="task.update",
            instance=task,
            before=before,
            after=snapshot(task),
        )
    return task


def task_definition_delete(*, task: TaskDefinition, actor) -> None:
    with transaction.atomic():
        audit_record(
            organization=task.organization, actor=actor, action="task.delete", instance=task, before=snapshot(task)
        )
        task.delete()
