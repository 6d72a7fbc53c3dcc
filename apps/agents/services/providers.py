"""LLM providers, model configurations and tools."""

from __future__ import annotations

import ipaddress
import uuid
from urllib.parse import urlsplit

import jsonschema
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from rest_framework import exceptions

from apps.agents import selectors
from apps.agents.models import ModelConfig, Provider, ProviderUsage, Tool, ToolType
from apps.agents.services.credentials import credential_create, credential_delete, credential_update
from apps.agents.tools.base import schema_errors
from apps.agents.tools.custom import CUSTOM_CONFIG_SCHEMA
from apps.audit.services import audit_record, snapshot
from apps.events.services import publish
from kai_platform.api.errors import Conflict
from kai_platform.llm.netguard import METADATA_ADDRESSES, METADATA_HOSTS, is_public

# --- providers & models ------------------------------------------------------------------------


def check_base_url(*, organization, base_url: str) -> None:
    """A provider's base URL must not name a private/loopback/metadata host (checked again, after
    DNS resolution, on every call), unless the organization's allow-list permits it."""

    if not base_url:
        return
    allowlist = selectors.network_allowlist(organization=organization)
    host = (urlsplit(base_url).hostname or "").lower().rstrip(".")
    if allowlist.allows_host(host):
        return
    message = None
    if host in METADATA_HOSTS:
        message = f"{host} is a cloud metadata endpoint"
    elif host == "localhost" or host.endswith(".localhost"):
        message = f"{host} is a loopback address; add it to the organization's network allow-list to permit it"
    else:
        try:
            ip = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            ip = None
        if ip is not None and (ip in METADATA_ADDRESSES or (not is_public(ip) and not allowlist.allows_ip(ip))):
            message = (
                f"{host} is a private, loopback or link-local address; add it to the organization's "
                "network allow-list to permit it"
            )
    if message:
        raise exceptions.ValidationError({"base_url": [message]})


def _provider_audit_view(provider: Provider) -> dict:
    return snapshot(
        provider,
        [
            "id",
            "name",
            "provider_type",
            "base_url",
            "credential",
            "default_model",
            "budget_limit",
            "is_default",
            "is_active",
            "timeout_seconds",
        ],
    )


def provider_create(*, organization, actor, data: dict) -> Provider:
    data = dict(data)
    api_key = data.pop("api_key", None)
    check_base_url(organization=organization, base_url=data.get("base_url") or "")
    try:
        with transaction.atomic():
            if api_key:
                data["credential"] = credential_create(
                    organization=organization,
                    actor=actor,
                    name=f"provider:{data['name']}",
                    service_name=data["provider_type"],
                    value=api_key,
                    description=f"API key of provider {data['name']}",
                )
            if data.get("is_default"):
                Provider.objects.for_org(organization).filter(is_default=True).update(is_default=False)
            provider = Provider.objects.create(
                organization=organization, created_by=actor if getattr(actor, "pk", None) else None, **data
            )
            audit_record(
                organization=organization,
                actor=actor,
                action="provider.create",
                instance=provider,
                after=_provider_audit_view(provider),
            )
            publish(
                organization,
                "provider.created",
                {"provider_id": str(provider.pk), "name": provider.name, "provider_type": provider.provider_type},
                actor=actor,
                component="providers",
            )
    except IntegrityError:
        raise Conflict(
            f"A provider named {data['name']!r} already exists.",
            errors=[{"field": "name", "message": "already exists"}],
        )
    return provider


def provider_update(*, provider: Provider, actor, data: dict) -> Provider:
    data = dict(data)
    api_key = data.pop("api_key", None)
    if "base_url" in data:
        check_base_url(organization=provider.organization, base_url=data["base_url"] or "")
    try:
        with transaction.atomic():
            provider = Provider.objects.select_for_update().get(pk=provider.pk)
            before = _provider_audit_view(provider)
            if api_key:
                if provider.credential is not None:
                    credential_update(credential=provider.credential, actor=actor, changes={"value": api_key})
                else:
                    provider.credential = credential_create(
                        organization=provider.organization,
                        actor=actor,
                        name=f"provider:{provider.name}:{uuid.uuid4().hex[:6]}",
                        service_name=provider.provider_type,
                        value=api_key,
                    )
            if data.get("is_default"):
                Provider.objects.for_org(provider.organization_id).exclude(pk=provider.pk).update(is_default=False)
            for key, value in data.items():
                setattr(provider, key, value)
            provider.save()
            audit_record(
                organization=provider.organization,
                actor=actor,
                action="provider.update",
                instance=provider,
                before=before,
                after=_provider_audit_view(provider),
            )
    except IntegrityError:
        raise Conflict(
            "A provider with this name already exists.", errors=[{"field": "name", "message": "already exists"}]
        )
    return provider


def provider_delete(*, provider: Provider, actor) -> None:
    with transaction.atomic():
        audit_record(
            organization=provider.organization,
            actor=actor,
            action="provider.delete",
            instance=provider,
            before=_provider_audit_view(provider),
        )
        credential = provider.credential
        provider.delete()
        if credential is not None and credential.name.startswith("provider:"):
            credential_delete(credential=credential, actor=actor)


def provider_record_validation(*, provider: Provider, ok: bool, error: str = "") -> None:
    Provider.objects.filter(pk=provider.pk).update(
        last_validated_at=timezone.now(), last_validation_ok=ok, last_validation_error=error[:2000]
    )


def provider_record_usage(*, provider: Provider, input_tokens: int, output_tokens: int, cost, calls: int = 1) -> None:
    """Add ``calls`` calls (their tokens and cost summed) to the provider's usage of today (an
    upsert, safe under concurrency)."""
    today = timezone.now().date()
    increments = {
        "input_tokens": F("input_tokens") + input_tokens,
        "output_tokens": F("output_tokens") + output_tokens,
        "cost": F("cost") + cost,
        "calls": F("calls") + calls,
    }
    rows = ProviderUsage.objects.filter(provider=provider, day=today)
    if rows.update(**increments):
        return
    try:
        with transaction.atomic():
            ProviderUsage.objects.create(
                organization_id=provider.organization_id,
                provider=provider,
                day=today,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cost=cost,
                calls=calls,
            )
    except IntegrityError:
        rows.update(**increments)


_USAGE_UPSERT = (
    "INSERT INTO {table} (id, organization_id, provider_id, day, input_tokens, output_tokens, cost, calls, "
    "created_at, updated_at) "
    "SELECT v.id, v.org, v.provider, v.day, v.tin, v.tout, v.cost, v.calls, v.at, v.at "
    "FROM (VALUES {rows}) AS v (id, org, provider, day, tin, tout, cost, calls, at) ORDER BY v.provider "
    "ON CONFLICT ON CONSTRAINT uniq_provider_day DO UPDATE SET "
    "input_tokens = {table}.input_tokens + EXCLUDED.input_tokens, "
    "output_tokens = {table}.output_tokens + EXCLUDED.output_tokens, "
    "cost = {table}.cost + EXCLUDED.cost, calls = {table}.calls + EXCLUDED.calls"
)


def provider_usage_statement(*, usage: list[tuple]) -> tuple[str, list]:
    """``provider_record_usage`` of several providers (``[(provider, input_tokens, output_tokens,
    cost, calls), …]``, one entry a provider) as ONE upsert statement, for a caller that sends it
    with its own statements (the run engine's batch of ends): ``(sql, params)``."""
    now = timezone.now()
    rows, params = [], []
    for provider, input_tokens, output_tokens, cost, calls in usage:
        rows.append("(%s::uuid, %s::uuid, %s::uuid, %s::date, %s::bigint, %s::bigint, %s::numeric, %s::int, %s)")
        params += [uuid.uuid4(), provider.organization_id, provider.pk, now.date(), input_tokens, output_tokens]
        params += [cost, calls, now]
    return _USAGE_UPSERT.format(table=ProviderUsage._meta.db_table, rows=", ".join(rows)), params


def model_config_create(*, organization, actor, data: dict) -> ModelConfig:
    try:
        with transaction.atomic():
            config = ModelConfig.objects.create(
                organization=organization, created_by=actor if getattr(actor, "pk", None) else None, **data
            )
            audit_record(
                organization=organization,
                actor=actor,
                action="model_config.create",
                instance=config,
                after=snapshot(config),
            )
    except IntegrityError:
        raise Conflict(
            f"A model named {data['name']!r} already exists.", errors=[{"field": "name", "message": "already exists"}]
        )
    return config


def model_config_update(*, config: ModelConfig, actor, data: dict) -> ModelConfig:
    try:
        with transaction.atomic():
            before = snapshot(config)
            for key, value in data.items():
                setattr(config, key, value)
            config.save()
            audit_record(
                organization=config.organization,
                actor=actor,
                action="model_config.update",
                instance=config,
                before=before,
                after=snapshot(config),
            )
    except IntegrityError:
        raise Conflict(
            "A model with this name already exists.", errors=[{"field": "name", "message": "already exists"}]
        )
    return config


def model_config_delete(*, config: ModelConfig, actor) -> None:
    with transaction.atomic():
        audit_record(
            organization=config.organization,
            actor=actor,
            action="model_config.delete",
            instance=config,
            before=snapshot(config),
        )
        config.delete()


# --- tools -------------------------------------------------------------------------------------

#: configuration keys every tool takes beside its own schema's; the run engine reads them
#: (``requires_approval``: a person approves each call first — apps.approvals)
PLATFORM_TOOL_KEYS = {"requires_approval": bool}


def _validate_tool_configuration(*, config_schema: dict, configuration: dict) -> None:
    own = {key: value for key, value in configuration.items() if key not in PLATFORM_TOOL_KEYS}
    errors = schema_errors(config_schema, own)
    errors += [
        f"$.{key}: must be a {kind.__name__}"
        for key, kind in PLATFORM_TOOL_KEYS.items()
        if key in configuration and not isinstance(configuration[key], kind)
    ]
    if errors:
        raise exceptions.ValidationError({"configuration": errors})


def _check_schema(schema: dict, field: str) -> None:
    if not schema:
        return
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise exceptions.ValidationError({field: [f"Not a valid JSON schema: {exc.message}"]})


def tool_create(*, organization, actor, data: dict) -> Tool:
    data = dict(data)
    if data.get("tool_type") == ToolType.BUILTIN:
        raise exceptions.ValidationError({"tool_type": ["Built-in tools ship with the platform; use 'custom'."]})
    data.setdefault("tool_type", ToolType.CUSTOM)
    _check_schema(data.get("config_schema") or {}, "config_schema")
    _check_schema(data.get("parameters_schema") or {}, "parameters_schema")
    schema = data.get("config_schema") or CUSTOM_CONFIG_SCHEMA
    data["config_schema"] = schema
    _validate_tool_configuration(config_schema=schema, configuration=data.get("configuration") or {})
    if data.get("configuration", {}).get("api_endpoint"):
        check_base_url(organization=organization, base_url=data["configuration"]["api_endpoint"])
    try:
        with transaction.atomic():
            tool = Tool.objects.create(
                organization=organization, created_by=actor if getattr(actor, "pk", None) else None, **data
            )
            audit_record(
                organization=organization, actor=actor, action="tool.create", instance=tool, after=snapshot(tool)
            )
    except IntegrityError:
        raise Conflict(
            f"A tool named {data['name']!r} already exists.", errors=[{"field": "name", "message": "already exists"}]
        )
    return tool


def tool_update(*, tool: Tool, actor, data: dict) -> Tool:
    data = dict(data)
    if tool.tool_type == ToolType.BUILTIN:
        locked = sorted(set(data) - {"configuration", "enabled", "description"})
        if locked:
            raise exceptions.ValidationError(
                {key: ["Built-in tools only change configuration, enabled and description."] for key in locked}
            )
    for key in ("config_schema", "parameters_schema"):
        if key in data:
            _check_schema(data[key] or {}, key)
    schema = data.get("config_schema", tool.config_schema)
    configuration = data.get("configuration", tool.configuration)
    _validate_tool_configuration(config_schema=schema, configuration=configuration or {})
    try:
        with transaction.atomic():
            before = snapshot(tool)
            for key, value in data.items():
                setattr(tool, key, value)
            tool.save()
            audit_record(
                organization=tool.organization,
                actor=actor,
                action="tool.update",
                instance=tool,
                before=before,
                after=snapshot(tool),
            )
    except IntegrityError:
        raise Conflict("A tool with this name already exists.", errors=[{"field": "name", "message": "already exists"}])
    return tool


def tool_toggle(*, tool: Tool, actor) -> Tool:
    return tool_update(tool=tool, actor=actor, data={"enabled": not tool.enabled})


def tool_delete(*, tool: Tool, actor) -> None:
    if tool.tool_type == ToolType.BUILTIN:
        raise Conflict("Built-in tools cannot be deleted; disable them instead.")
    with transaction.atomic():
        audit_record(
            organization=tool.organization, actor=actor, action="tool.delete", instance=tool, before=snapshot(tool)
        )
        tool.delete()
