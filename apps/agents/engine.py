"""What the agents app provides to the run engine (``apps.runs.registry`` services): model
resolution and clients, tools, provider spend and usage, the agents of a run and their counters.
Registered by ``AgentsConfig.ready``; the engine never imports this app."""

from __future__ import annotations

from django.db.models.signals import post_delete, post_save
from rest_framework.exceptions import APIException

from apps.agents.models import Agent, Credential, ModelConfig, Provider, Tool
from apps.agents.runtime import client_for
from apps.agents.runtime import model_resolve as resolve
from apps.agents.selectors import provider_month_spend as spend
from apps.agents.services import agent_record_execution
from apps.agents.services import provider_record_usage as record
from apps.agents.services import provider_usage_statement as usage_statement
from apps.agents.tools.base import ToolContext, run_tool
from apps.runs import llm as llm_layer
from apps.runs.registry import provide


@provide("model_resolve")
def model_resolve(organization, model_name):
    try:
        resolved = resolve(organization=organization, name=model_name)
        client = client_for(organization=organization, resolved=resolved)
    except APIException as exc:
        raise llm_layer.ModelUnavailable(str(exc.detail))
    pricing = resolved.parameters.get("pricing") if isinstance(resolved.parameters.get("pricing"), dict) else None
    provider = resolved.provider
    return llm_layer.ResolvedModel(
        client=client,
        requested=resolved.requested or resolved.model,
        model=resolved.model,
        provider_type=resolved.provider_type,
        provider_key=str(provider.pk) if provider is not None else llm_layer.BUILTIN_KEY,
        provider=provider,
        pricing_override=pricing,
        note=resolved.note,
    )


# the engine reuses a resolution for a second; a change made here is seen by the next run at once
for _model in (Provider, ModelConfig, Credential):
    post_save.connect(llm_layer.forget_resolved, sender=_model, dispatch_uid=f"runs-resolve-{_model.__name__}")
    post_delete.connect(llm_layer.forget_resolved, sender=_model, dispatch_uid=f"runs-resolve-del-{_model.__name__}")


@provide("tools_load")
def tools_load(organization, names):
    return list(Tool.objects.for_org(organization).filter(name__in=list(names), enabled=True))


@provide("tool_run")
def tool_run(tool, arguments, *, organization, agent, actor, citations=None):
    return run_tool(
        tool,
        arguments,
        ToolContext(
            organization=organization, agent=agent, actor=actor, citations=citations if citations is not None else []
        ),
    )


@provide("provider_month_spend")
def provider_month_spend(provider):
    return spend(provider=provider)


@provide("provider_record_usage")
def provider_record_usage(provider, input_tokens, output_tokens, cost, calls=1):
    record(provider=provider, input_tokens=input_tokens, output_tokens=output_tokens, cost=cost, calls=calls)


@provide("provider_usage_statement")
def provider_usage_statement(usage):
    return usage_statement(usage=usage)


@provide("agents_load")
def agents_load(organization, ids):
    return {str(a.pk): a for a in Agent.objects.for_org(organization).filter(pk__in=list(ids))}


@provide("agent_record_run")
def agent_record_run(agent, seconds, error, runs=1):
    agent_record_execution(agent=agent, seconds=seconds, error=error, runs=runs)
