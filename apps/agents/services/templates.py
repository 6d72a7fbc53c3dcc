"""Built-ins installed per organization, prompt/agent/orchestration templates."""

from __future__ import annotations

import json
import string as _string

from django.db import IntegrityError, transaction
from rest_framework import exceptions

from apps.agents import official, orchestrations
from apps.agents.models import Agent, AgentTemplate, OrchestrationTemplate, PromptTemplate, Provider, Tool, ToolType
from apps.agents.services.agents import agent_create, agent_fields_from_yaml, check_tools, parse_yaml_mapping
from apps.agents.tools.base import BUILTIN_TOOLS, builtin_spec
from apps.audit.services import audit_covered, audit_record, snapshot
from kai_platform.api.errors import Conflict

# --- built-ins per organization ----------------------------------------------------------------


def organization_install_builtins(*, organization) -> dict:
    """Idempotent: the builtin provider, the built-in tools and the official templates."""
    builtin_spec("calculator")  # registers the built-ins
    with transaction.atomic():
        created = {
            "providers": 0,
            "tools": 0,
            "agent_templates": 0,
            "orchestration_templates": 0,
            "prompt_templates": 0,
        }
        if not Provider.objects.for_org(organization).filter(provider_type="builtin").exists():
            has_default = Provider.objects.for_org(organization).filter(is_default=True).exists()
            Provider.objects.create(
                organization=organization,
                name="builtin",
                provider_type="builtin",
                default_model="builtin",
                is_default=not has_default,
            )
            created["providers"] += 1
        created["tools"] = _install_builtin_tools(organization)
        created.update(_install_official_templates(organization))
    return created


def _install_builtin_tools(organization) -> int:
    """The built-in tools the organization does not have yet; how many were added."""
    existing = set(Tool.objects.for_org(organization).values_list("name", flat=True))
    tools = [
        Tool(
            organization=organization,
            name=spec.name,
            description=spec.description,
            tool_type=ToolType.BUILTIN,
            configuration=dict(spec.default_configuration),
            config_schema=spec.config_schema,
            parameters_schema=spec.parameters_schema,
            enabled=True,
        )
        for spec in BUILTIN_TOOLS.values()
        if spec.name not in existing
    ]
    Tool.objects.bulk_create(tools)
    return len(tools)


def _install_official_templates(organization) -> dict:
    """The official agent, orchestration and prompt templates the organization does not have yet;
    how many of each were added."""
    have = set(
        AgentTemplate.objects.for_org(organization).filter(is_official=True).values_list("official_key", flat=True)
    )
    agents = [
        AgentTemplate(
            organization=organization,
            is_official=True,
            official_key=t["key"],
            name=t["name"],
            description=t["description"],
            category=t["category"],
            agent_type=t["agent_type"],
            config_yaml=t["config_yaml"],
        )
        for t in official.AGENT_TEMPLATES
        if t["key"] not in have
    ]
    AgentTemplate.objects.bulk_create(agents)
    have = set(
        OrchestrationTemplate.objects.for_org(organization)
        .filter(is_official=True)
        .values_list("official_key", flat=True)
    )
    orchestrations = [
        OrchestrationTemplate(
            organization=organization,
            is_official=True,
            official_key=t["key"],
            name=t["name"],
            description=t["description"],
            category=t["category"],
            pattern=t["pattern"],
            config_yaml=t["config_yaml"],
        )
        for t in official.ORCHESTRATION_TEMPLATES
        if t["key"] not in have
    ]
    OrchestrationTemplate.objects.bulk_create(orchestrations)
    have = set(PromptTemplate.objects.for_org(organization).filter(is_official=True).values_list("name", flat=True))
    prompts = [
        PromptTemplate(organization=organization, is_official=True, **t)
        for t in official.PROMPT_TEMPLATES
        if t["name"] not in have
    ]
    PromptTemplate.objects.bulk_create(prompts)
    return {
        "agent_templates": len(agents),
        "orchestration_templates": len(orchestrations),
        "prompt_templates": len(prompts),
    }


# --- templates ---------------------------------------------------------------------------------


def template_variables(text: str) -> list[str]:
    """``{name}`` placeholders in order of first use (``{{``/``}}`` are literal braces)."""
    names = []
    try:
        parsed = list(_string.Formatter().parse(text))
    except ValueError as exc:
        raise exceptions.ValidationError({"template": [f"Unbalanced braces: {exc}"]})
    for _, field_name, format_spec, conversion in parsed:
        if field_name is None:
            continue
        if not field_name.isidentifier() or format_spec or conversion:
            raise exceptions.ValidationError(
                {
                    "template": [
                        f"Placeholder {{{field_name}{'!' + conversion if conversion else ''}{':' + format_spec if format_spec else ''}}} "
                        "is not a plain variable name."
                    ]
                }
            )
        if field_name not in names:
            names.append(field_name)
    return names


def template_render(*, template: PromptTemplate, variables: dict) -> str:
    needed = template_variables(template.template)
    missing = [name for name in needed if name not in variables]
    if missing:
        raise exceptions.ValidationError({f"variables.{name}": ["Missing template variable."] for name in missing})
    out = []
    for literal, field_name, _, _ in _string.Formatter().parse(template.template):
        out.append(literal)
        if field_name is not None:
            value = variables[field_name]
            out.append(value if isinstance(value, str) else json.dumps(value))
    return "".join(out)


def _template_write(model, *, organization, actor, data: dict, instance=None, action: str):
    label = model._meta.model_name
    if instance is not None and instance.is_official:
        raise Conflict("Official templates are read-only; copy it under another name to change it.")
    _template_check(model, organization=organization, data=data)
    try:
        with transaction.atomic():
            if instance is None:
                instance = model.objects.create(
                    organization=organization, created_by=actor if getattr(actor, "pk", None) else None, **data
                )
                audit_record(
                    organization=organization,
                    actor=actor,
                    action=f"{label}.create",
                    instance=instance,
                    after=snapshot(instance),
                )
            elif action == "delete":
                audit_record(
                    organization=organization,
                    actor=actor,
                    action=f"{label}.delete",
                    instance=instance,
                    before=snapshot(instance),
                )
                instance.delete()
            else:
                before = snapshot(instance)
                for key, value in data.items():
                    setattr(instance, key, value)
                instance.save()
                audit_record(
                    organization=organization,
                    actor=actor,
                    action=f"{label}.update",
                    instance=instance,
                    before=before,
                    after=snapshot(instance),
                )
    except IntegrityError:
        raise Conflict(
            "A template with this name already exists.", errors=[{"field": "name", "message": "already exists"}]
        )
    return instance


def _template_check(model, *, organization, data: dict) -> None:
    """A prompt template's variables (filled in from the text when not given; every one the text
    uses declared) and an agent template's tools (known to the organization)."""
    if model is PromptTemplate and "template" in data:
        found = template_variables(data["template"])
        declared = data.get("variables")
        if declared is None:
            data["variables"] = found
        else:
            undeclared = [n for n in found if n not in declared]
            if undeclared:
                raise exceptions.ValidationError(
                    {
                        "variables": [
                            f"The template uses {', '.join(repr(n) for n in undeclared)}, not listed in variables."
                        ]
                    }
                )
    if "config_yaml" in data:
        parsed = parse_yaml_mapping(data["config_yaml"], field="config_yaml")
        if model is AgentTemplate:
            fields = agent_fields_from_yaml(parsed)
            if fields.get("tools"):
                try:
                    check_tools(organization=organization, names=fields["tools"])
                except exceptions.ValidationError as exc:
                    detail = exc.detail  # check_tools' {"tools": [...]}
                    raise exceptions.ValidationError(
                        {"config_yaml": detail["tools"] if isinstance(detail, dict) else detail}
                    )


def template_create(model, *, organization, actor, data: dict):
    return _template_write(model, organization=organization, actor=actor, data=dict(data), action="create")


def template_update(*, instance, actor, data: dict):
    return _template_write(
        type(instance),
        organization=instance.organization,
        actor=actor,
        data=dict(data),
        instance=instance,
        action="update",
    )


def template_delete(*, instance, actor) -> None:
    _template_write(
        type(instance), organization=instance.organization, actor=actor, data={}, instance=instance, action="delete"
    )


def agent_template_use(
    *, template: AgentTemplate, actor, name: str | None = None, description: str | None = None
) -> Agent:
    data = {
        "name": name or template.name,
        "config_yaml": template.config_yaml,
        "agent_type": template.agent_type,
        "description": description if description is not None else template.description,
    }
    with transaction.atomic():
        with audit_covered():  # one row: the agent made from the template
            agent = agent_create(
                organization=template.organization,
                actor=actor,
                data=data,
                template=template.official_key or str(template.pk),
            )
        audit_record(
            organization=template.organization,
            actor=actor,
            action="agent_template.use",
            instance=agent,
            after={**snapshot(agent), "template_id": str(template.pk)},
        )
    return agent


def orchestration_template_use(*, template: OrchestrationTemplate, actor, name: str | None = None) -> dict:
    """Create the orchestration when the crews app is installed (it provides orchestrations);
    otherwise answer with the configuration a client can create it from later."""
    config = parse_yaml_mapping(template.config_yaml, field="config_yaml")
    body = {
        "name": name or template.name,
        "pattern": template.pattern,
        "config_yaml": template.config_yaml,
        "config": config,
        "description": template.description,
    }
    if orchestrations.available():
        orchestration = orchestrations.orchestration_create(
            organization=template.organization,
            actor=actor,
            data={
                "name": body["name"],
                "pattern": template.pattern,
                "config_yaml": template.config_yaml,
                "description": template.description,
            },
        )
        return {
            "created": True,
            "template_id": template.pk,
            "orchestration_id": orchestration.pk,
            "orchestration": body,
        }
    return {
        "created": False,
        "template_id": template.pk,
        "orchestration_id": None,
        "orchestration": body,
        "detail": "Orchestrations are not available on this platform yet; create one from `orchestration` later.",
    }
