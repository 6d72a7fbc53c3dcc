"""Writes of the agents app. Every write runs in a transaction that also records the audit row
and publishes its event (late, after the slow work). Secrets never reach audit rows, events or logs."""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import secrets
import string
import time
import uuid
from datetime import timedelta

import yaml
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone
from rest_framework import exceptions

from apps.agents import crypto, orchestrations, selectors
from apps.agents.models import (
    AGENT_CONFIG_FIELDS,
    Agent,
    AgentMemory,
    AgentStatus,
    AgentTemplate,
    AgentVersion,
    Credential,
    Deployment,
    DeploymentStatus,
    ModelConfig,
    OrchestrationTemplate,
    PromptTemplate,
    Provider,
    Service,
    ServiceStatus,
    ServiceType,
    Tool,
    ToolType,
)
from apps.audit.services import audit_covered, audit_record, snapshot
from apps.events.services import publish
from kai_platform.api.errors import Conflict

logger = logging.getLogger(__name__)

_LOCK_NAMESPACE = 0x6B42  # advisory locks of the agents app
_ALPHABET = string.ascii_letters + string.digits


def _lock(organization_id, salt: int) -> None:
    value = organization_id if isinstance(organization_id, uuid.UUID) else uuid.UUID(str(organization_id))
    key = ((value.int ^ salt) & 0x7FFFFFFF) - (1 << 30)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_LOCK_NAMESPACE, key])


# --- configuration parsing ---------------------------------------------------------------------

def parse_yaml_mapping(text: str, *, field: str) -> dict:
    """YAML text → mapping; a syntax error is a 400 naming the field, line and column."""
    if not (text or "").strip():
        return {}
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise exceptions.ValidationError({field: [f"Invalid YAML at {where}{exc.problem or exc.context}"]})
    except yaml.YAMLError as exc:
        raise exceptions.ValidationError({field: [f"Invalid YAML: {exc}"]})
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise exceptions.ValidationError({field: [f"Must be a YAML mapping, not a {type(data).__name__}."]})
    return data


def parse_json_mapping(value, *, field: str) -> dict:
    """A JSON object, or a string holding one; a syntax error names the line and column."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise exceptions.ValidationError({field: [f"Invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"]})
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise exceptions.ValidationError({field: ["Must be a JSON object."]})
    return value


_YAML_FIELDS = ("description", "role", "goal", "backstory", "llm", "tools", "allow_delegation", "verbose", "agent_type",
                "voice_enabled")


def agent_fields_from_yaml(config: dict) -> dict:
    """Agent fields a YAML definition carries (CrewAI-style keys; ``model`` and ``provider.model`` mean ``llm``).
    A single top-level key holding the definition (``researcher: {role: …}``) is unwrapped."""
    if len(config) == 1:
        (only,) = config.values()
        if isinstance(only, dict) and ("role" in only or "goal" in only):
            config = only
    fields = {key: config[key] for key in _YAML_FIELDS if key in config}
    if "llm" not in fields:
        if isinstance(config.get("model"), str):
            fields["llm"] = config["model"]
        elif isinstance(config.get("provider"), dict) and config["provider"].get("model"):
            fields["llm"] = config["provider"]["model"]
    if "tools" in fields:
        tools = fields["tools"]
        if not isinstance(tools, list) or not all(isinstance(t, str) for t in tools):
            raise exceptions.ValidationError({"config_yaml": ["`tools` must be a list of tool names."]})
    for key in ("description", "role", "goal", "backstory", "llm", "agent_type"):
        if key in fields and not isinstance(fields[key], str):
            fields[key] = str(fields[key])
    for key in ("allow_delegation", "verbose", "voice_enabled"):
        if key in fields and not isinstance(fields[key], bool):
            raise exceptions.ValidationError({"config_yaml": [f"`{key}` must be true or false."]})
    return fields


def _check_tools(*, organization, names: list[str]) -> list[str]:
    names = list(dict.fromkeys(n.strip() for n in names if n and n.strip()))
    known = selectors.tool_names(organization=organization)
    unknown = [n for n in names if n not in known]
    if unknown:
        listed = ", ".join(sorted(known)) or "none"
        raise exceptions.ValidationError({"tools": [
            f"Unknown tool{'s' if len(unknown) > 1 else ''}: {', '.join(repr(n) for n in unknown)}. "
            f"Known tools: {listed}."]})
    return names


def _agent_values(*, organization, data: dict, instance: Agent | None = None) -> dict:
    """Resolve config/config_yaml into field values; explicit body fields win over YAML ones."""
    values = dict(data)
    if "config" in values:
        values["config"] = parse_json_mapping(values["config"], field="config")
    if "config_yaml" in values:
        from_yaml = agent_fields_from_yaml(parse_yaml_mapping(values["config_yaml"], field="config_yaml"))
        for key, value in from_yaml.items():
            values.setdefault(key, value)
    if "tools" in values:
        values["tools"] = _check_tools(organization=organization, names=values["tools"] or [])
    return values


def _config_snapshot(agent: Agent) -> dict:
    return {field: getattr(agent, field) for field in AGENT_CONFIG_FIELDS}


# --- agents ------------------------------------------------------------------------------------

def agent_create(*, organization, actor, data: dict, template: str | None = None) -> Agent:
    """``template``: the template it was made from (named in the ``agent.created`` event)."""
    values = _agent_values(organization=organization, data=data)
    if not values.get("name"):
        raise exceptions.ValidationError({"name": ["This field is required."]})
    with transaction.atomic():
        _lock(organization.pk, 0x1)
        last = Agent.objects.for_org(organization).order_by("-agent_number").values_list("agent_number", flat=True).first()
        agent = Agent(organization=organization, created_by=actor if getattr(actor, "pk", None) else None,
                      agent_number=(last or 0) + 1, **values)
        if not agent.is_active:
            agent.status = AgentStatus.DISABLED
        agent.save()
        AgentVersion.objects.create(organization=organization, created_by=agent.created_by, agent=agent, version=1,
                                    snapshot=snapshot(agent, list(AGENT_CONFIG_FIELDS)),
                                    changed_fields=list(values))
        audit_record(organization=organization, actor=actor, action="agent.create", instance=agent,
                     after=snapshot(agent))
        publish(organization, "agent.created", {
            "agent_id": str(agent.pk), "agent_number": agent.agent_number, "name": agent.name,
            "template": template, "created_by": str(actor.pk) if getattr(actor, "pk", None) else None,
            "status": agent.status}, agent=agent, actor=actor, owner=agent.created_by, component="agents")
    return agent


def agent_update(*, agent: Agent, actor, data: dict) -> Agent:
    values = _agent_values(organization=agent.organization_id, data=data, instance=agent)
    with transaction.atomic():
        agent = Agent.objects.select_for_update().get(pk=agent.pk)
        before = snapshot(agent)
        old_config = _config_snapshot(agent)
        old_status = agent.status
        for key, value in values.items():
            setattr(agent, key, value)
        if "is_active" in values and "status" not in values:
            if not agent.is_active:
                agent.status = AgentStatus.DISABLED
            elif old_status == AgentStatus.DISABLED:
                agent.status = AgentStatus.IDLE
        changed = [f for f in AGENT_CONFIG_FIELDS if _config_snapshot(agent)[f] != old_config[f]]
        if changed:
            agent.version += 1
        agent.save()
        if changed:
            AgentVersion.objects.create(organization_id=agent.organization_id, created_by=actor if getattr(actor, "pk", None) else None,
                                        agent=agent, version=agent.version,
                                        snapshot=snapshot(agent, list(AGENT_CONFIG_FIELDS)), changed_fields=changed)
        audit_record(organization=agent.organization, actor=actor, action="agent.update", instance=agent,
                     before=before, after=snapshot(agent))
        if changed:
            publish(agent.organization_id, "agent.updated", {"agent_id": str(agent.pk), "version": agent.version,
                                                             "changed_fields": changed},
                    agent=agent, actor=actor, owner=agent.created_by, component="agents")
        if agent.status != old_status:
            _publish_status(agent, old_status, actor, reason="updated_by_user")
    return agent


def _publish_status(agent: Agent, old_status: str, actor, *, reason: str) -> None:
    """``agent.status_changed`` with seed 004's fields (``reason``, ``last_inference``,
    ``inference_count``) and what seed 002's ``AgentStatus`` objects are built from."""
    publish(agent.organization_id, "agent.status_changed",
            {"agent_id": str(agent.pk), "agent_number": agent.agent_number, "old_status": old_status,
             "new_status": agent.status, "timestamp": timezone.now().isoformat(), "reason": reason,
             "last_inference": agent.last_execution.isoformat() if agent.last_execution else None,
             "inference_count": agent.execution_count, "last_error": agent.last_error or None},
            agent=agent, actor=actor, owner=agent.created_by, component="agents")


def agent_delete(*, agent: Agent, actor, reason: str = "user_request") -> None:
    with transaction.atomic():
        audit_record(organization=agent.organization, actor=actor, action="agent.delete", instance=agent,
                     before=snapshot(agent))
        publish(agent.organization_id, "agent.deleted", {
            "agent_id": str(agent.pk), "agent_number": agent.agent_number, "name": agent.name,
            "deleted_by": str(actor.pk) if getattr(actor, "pk", None) else None, "reason": reason},
                agent=agent, actor=actor, owner=agent.created_by, component="agents")
        agent.delete()


def agent_restart(*, agent: Agent, actor) -> Agent:
    """Back to a clean state: idle (disabled agents stay disabled), error cleared."""
    with transaction.atomic():
        agent = Agent.objects.select_for_update().get(pk=agent.pk)
        before = snapshot(agent, ["status", "last_error"])
        old_status = agent.status
        agent.status = AgentStatus.IDLE if agent.is_active else AgentStatus.DISABLED
        agent.last_error = ""
        agent.save(update_fields=["status", "last_error", "updated_at"])
        audit_record(organization=agent.organization, actor=actor, action="agent.restart", instance=agent,
                     before=before, after=snapshot(agent, ["status", "last_error"]))
        publish(agent.organization_id, "agent.restarted",
                {"agent_id": str(agent.pk), "old_status": old_status, "status": agent.status},
                agent=agent, actor=actor, owner=agent.created_by, component="agents")
        if agent.status != old_status:
            _publish_status(agent, old_status, actor, reason="restarted_by_user")
    return agent


def agent_heartbeat(*, agent: Agent) -> None:
    """Seed 000 heartbeat: liveness in Redis at once; ``last_heartbeat`` in the database at most every 10 s."""
    from django.conf import settings

    now = timezone.now()
    cache.set(selectors.heartbeat_key("agent", agent.pk), now.isoformat(), timeout=settings.KAI_HEARTBEAT_TTL_SECONDS)
    if cache.add(f"heartbeat-db:{agent.pk}", 1, timeout=10):
        Agent.objects.filter(pk=agent.pk).update(last_heartbeat=now)


def agent_record_execution(*, agent: Agent, seconds: float, error: str = "") -> None:
    """Roll one finished execution into the agent's counters (a single UPDATE, race-free)."""
    n = F("execution_count")
    updates = {"execution_count": n + 1, "last_execution": timezone.now(),
               "average_execution_time": (F("average_execution_time") * n + seconds) / (n + 1)}
    if error:
        updates["last_error"] = error[:2000]
    Agent.objects.filter(pk=agent.pk).update(**updates)
    minute = int(timezone.now().timestamp() // 60)
    key = f"agent-calls:{agent.pk}:{minute}"
    cache.add(key, 0, timeout=120)
    try:
        cache.incr(key)
    except ValueError:
        cache.set(key, 1, timeout=120)


# --- memory ------------------------------------------------------------------------------------

def memory_store(*, agent: Agent, actor, memory_type: str, content, tags: list[str], ttl: int | None) -> AgentMemory:
    expires_at = timezone.now() + timedelta(seconds=int(ttl)) if ttl else None
    with transaction.atomic():
        memory = AgentMemory.objects.create(
            organization_id=agent.organization_id, agent=agent, memory_type=memory_type or "general", content=content,
            tags=list(dict.fromkeys(tags or [])), expires_at=expires_at,
            created_by=actor if getattr(actor, "pk", None) else None)
        audit_record(organization=agent.organization, actor=actor, action="agent_memory.create", instance=memory,
                     after=snapshot(memory, ["id", "agent", "memory_type", "tags", "expires_at"]))
        publish(agent.organization_id, "agent.memory_stored",
                {"agent_id": str(agent.pk), "memory_id": str(memory.pk), "memory_type": memory.memory_type,
                 "tags": memory.tags}, agent=agent, actor=actor, owner=agent.created_by, component="agents")
    return memory


def memory_purge_expired(*, batch: int = 5000) -> int:
    """Platform-wide housekeeping: delete expired memories (reads already hide them)."""
    ids = list(AgentMemory.objects.filter(expires_at__lte=timezone.now()).values_list("pk", flat=True)[:batch])
    if ids:
        AgentMemory.objects.filter(pk__in=ids).delete()
    return len(ids)


# --- credentials -------------------------------------------------------------------------------

def _sealed(value: str, additional_fields: dict | None) -> tuple[str, str]:
    payload = json.dumps({"value": value, "additional_fields": additional_fields or {}})
    return crypto.encrypt(payload)


def credential_secret(*, credential: Credential) -> dict:
    """The clear secret ``{"value", "additional_fields"}``: for the call that needs it only."""
    return json.loads(crypto.decrypt(credential.encrypted_value))


def _credential_audit_view(credential: Credential) -> dict:
    return snapshot(credential, ["id", "name", "service_name", "credential_type", "encryption_key_id", "masked",
                                 "description", "expires_at", "auto_rotate"])


def credential_create(*, organization, actor, name: str, service_name: str, value: str, credential_type: str = "api_key",
                      additional_fields: dict | None = None, description: str = "", expires_at=None,
                      auto_rotate: bool = False) -> Credential:
    token, key_id = _sealed(value, additional_fields)
    try:
        with transaction.atomic():
            credential = Credential.objects.create(
                organization=organization, created_by=actor if getattr(actor, "pk", None) else None,
                name=name, service_name=service_name, credential_type=credential_type, encrypted_value=token,
                encryption_key_id=key_id, masked=crypto.mask(value), description=description or "",
                expires_at=expires_at, auto_rotate=auto_rotate)
            audit_record(organization=organization, actor=actor, action="credential.create", instance=credential,
                         after=_credential_audit_view(credential))
            publish(organization, "credential.created", {"credential_id": str(credential.pk), "name": name,
                                                         "service_name": service_name},
                    actor=actor, owner=credential.created_by, component="secrets")
    except IntegrityError:
        raise Conflict(f"A credential named {name!r} already exists.", errors=[{"field": "name", "message": "already exists"}])
    return credential


def credential_update(*, credential: Credential, actor, changes: dict) -> Credential:
    """``changes`` may hold ``value``/``additional_fields`` (re-encrypted) and metadata fields."""
    try:
        with transaction.atomic():
            credential = Credential.objects.select_for_update().get(pk=credential.pk)
            before = _credential_audit_view(credential)
            if "value" in changes or "additional_fields" in changes:
                current = credential_secret(credential=credential)
                value = changes.get("value", current["value"])
                extra = changes.get("additional_fields", current.get("additional_fields"))
                credential.encrypted_value, credential.encryption_key_id = _sealed(value, extra)
                credential.masked = crypto.mask(value)
            for key in ("name", "service_name", "credential_type", "description", "expires_at", "auto_rotate"):
                if key in changes:
                    setattr(credential, key, changes[key])
            credential.save()
            audit_record(organization=credential.organization, actor=actor, action="credential.update",
                         instance=credential, before=before, after=_credential_audit_view(credential))
    except IntegrityError:
        raise Conflict("A credential with this name already exists.", errors=[{"field": "name", "message": "already exists"}])
    return credential


def credential_delete(*, credential: Credential, actor) -> None:
    with transaction.atomic():
        audit_record(organization=credential.organization, actor=actor, action="credential.delete",
                     instance=credential, before=_credential_audit_view(credential))
        credential.delete()


def credential_use(*, credential: Credential) -> dict:
    """Decrypt for a call and count the use."""
    secret = credential_secret(credential=credential)
    Credential.objects.filter(pk=credential.pk).update(usage_count=F("usage_count") + 1, last_used=timezone.now())
    return secret


def credential_reveal(*, credential: Credential, actor) -> dict:
    """The clear value for an owner/admin, audited (the audit row holds no value)."""
    secret = credential_secret(credential=credential)
    with transaction.atomic():
        audit_record(organization=credential.organization, actor=actor, action="credential.reveal",
                     instance=credential, after={"name": credential.name})
    return secret


def credential_verify(*, credential: Credential, value: str | None) -> dict:
    """Can the platform read this credential (current keys), is it unexpired, and — if a value
    is given — is it the stored one (constant-time)."""
    import hmac

    result = {"credential_id": credential.pk, "decryptable": True, "expired": False, "matches": None,
              "encryption_key_id": credential.encryption_key_id, "current_key": credential.encryption_key_id == crypto.primary_key_id()}
    try:
        secret = credential_secret(credential=credential)
    except crypto.SecretUnreadable:
        result["decryptable"] = False
        secret = None
    if credential.expires_at and credential.expires_at <= timezone.now():
        result["expired"] = True
    if value is not None and secret is not None:
        result["matches"] = hmac.compare_digest(value.encode(), str(secret["value"]).encode())
    result["valid"] = result["decryptable"] and not result["expired"] and result["matches"] is not False
    return result


def _backup_fernet(passphrase: str, salt: bytes, n: int):
    from cryptography.fernet import Fernet
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    key = Scrypt(salt=salt, length=32, n=n, r=8, p=1).derive(passphrase.encode())
    return Fernet(base64.urlsafe_b64encode(key))


BACKUP_SCRYPT_N = 2 ** 15


def credentials_backup(*, organization, actor, passphrase: str) -> dict:
    """Every credential of the organization, encrypted under a key derived from ``passphrase``
    (scrypt): a portable backup that no platform key can open."""
    rows = []
    for credential in Credential.objects.for_org(organization).order_by("name"):
        secret = credential_secret(credential=credential)
        rows.append({"name": credential.name, "service_name": credential.service_name,
                     "credential_type": credential.credential_type, "value": secret["value"],
                     "additional_fields": secret.get("additional_fields") or {}, "description": credential.description,
                     "expires_at": credential.expires_at.isoformat() if credential.expires_at else None,
                     "auto_rotate": credential.auto_rotate})
    salt = os.urandom(16)
    token = _backup_fernet(passphrase, salt, BACKUP_SCRYPT_N).encrypt(json.dumps({"credentials": rows}).encode())
    with transaction.atomic():
        audit_record(organization=organization, actor=actor, action="credential.backup", model="agents.Credential",
                     object_id="*", after={"count": len(rows)})
    return {"backup": token.decode(), "count": len(rows), "created_at": timezone.now(),
            "kdf": {"name": "scrypt", "n": BACKUP_SCRYPT_N, "r": 8, "p": 1, "salt": base64.b64encode(salt).decode()},
            "cipher": "fernet"}


def credentials_restore(*, organization, actor, backup: str, kdf: dict, passphrase: str, overwrite: bool = False) -> dict:
    from cryptography.fernet import InvalidToken

    try:
        salt = base64.b64decode(kdf["salt"])
        data = json.loads(_backup_fernet(passphrase, salt, int(kdf.get("n", BACKUP_SCRYPT_N))).decrypt(backup.encode()))
    except (InvalidToken, KeyError, ValueError, TypeError):
        raise exceptions.ValidationError({"passphrase": ["The backup does not open with this passphrase."]})
    created, updated, skipped = 0, 0, 0
    with transaction.atomic():
        for row in data.get("credentials", []):
            existing = Credential.objects.for_org(organization).filter(name=row["name"]).first()
            fields = {"service_name": row["service_name"], "credential_type": row["credential_type"],
                      "description": row.get("description") or "", "expires_at": row.get("expires_at"),
                      "auto_rotate": bool(row.get("auto_rotate"))}
            if existing is None:
                credential_create(organization=organization, actor=actor, name=row["name"], value=row["value"],
                                  additional_fields=row.get("additional_fields"), **fields)
                created += 1
            elif overwrite:
                credential_update(credential=existing, actor=actor,
                                  changes={"value": row["value"], "additional_fields": row.get("additional_fields"), **fields})
                updated += 1
            else:
                skipped += 1
    return {"created": created, "updated": updated, "skipped": skipped}


def credentials_rotate_all(*, batch_size: int = 500, stdout=None) -> dict:
    """Platform-wide: re-encrypt every credential under the newest key (``rotate_secrets``)."""
    primary = crypto.primary_key_id()
    rotated = unreadable = 0
    last_pk = None
    while True:
        queryset = Credential.objects.order_by("pk")
        if last_pk is not None:
            queryset = queryset.filter(pk__gt=last_pk)
        page = list(queryset.only("pk", "organization_id", "encrypted_value", "encryption_key_id")[:batch_size])
        if not page:
            break
        last_pk = page[-1].pk
        with transaction.atomic():
            for credential in page:
                try:
                    token, key_id = crypto.rotate(credential.encrypted_value)
                except crypto.SecretUnreadable:
                    unreadable += 1
                    logger.error("credential %s does not decrypt under any configured key", credential.pk)
                    continue
                Credential.objects.filter(pk=credential.pk).update(encrypted_value=token, encryption_key_id=key_id)
                rotated += 1
    return {"rotated": rotated, "unreadable": unreadable, "key_id": primary}


def credential_rotate(*, credential: Credential, actor) -> Credential:
    """Re-encrypt one credential under the newest key (the operator console's "rotate" action).
    Raises ``crypto.SecretUnreadable`` when no configured key opens it."""
    with transaction.atomic():
        credential = Credential.objects.select_for_update().get(pk=credential.pk)
        before = _credential_audit_view(credential)
        credential.encrypted_value, credential.encryption_key_id = crypto.rotate(credential.encrypted_value)
        credential.save(update_fields=["encrypted_value", "encryption_key_id", "updated_at"])
        audit_record(organization=credential.organization, actor=actor, action="credential.rotate",
                     instance=credential, before=before, after=_credential_audit_view(credential))
    return credential


# --- providers & models ------------------------------------------------------------------------

def _check_base_url(*, organization, base_url: str) -> None:
    """A provider's base URL must not name a private/loopback/metadata host (checked again, after
    DNS resolution, on every call), unless the organization's allow-list permits it."""
    import ipaddress
    from urllib.parse import urlsplit

    from kai_platform.llm.netguard import METADATA_ADDRESSES, METADATA_HOSTS, is_public

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
            message = (f"{host} is a private, loopback or link-local address; add it to the organization's "
                       "network allow-list to permit it")
    if message:
        raise exceptions.ValidationError({"base_url": [message]})


def _provider_audit_view(provider: Provider) -> dict:
    return snapshot(provider, ["id", "name", "provider_type", "base_url", "credential", "default_model", "budget_limit",
                               "is_default", "is_active", "timeout_seconds"])


def provider_create(*, organization, actor, data: dict) -> Provider:
    data = dict(data)
    api_key = data.pop("api_key", None)
    _check_base_url(organization=organization, base_url=data.get("base_url") or "")
    try:
        with transaction.atomic():
            if api_key:
                data["credential"] = credential_create(
                    organization=organization, actor=actor, name=f"provider:{data['name']}",
                    service_name=data["provider_type"], value=api_key, description=f"API key of provider {data['name']}")
            if data.get("is_default"):
                Provider.objects.for_org(organization).filter(is_default=True).update(is_default=False)
            provider = Provider.objects.create(organization=organization,
                                               created_by=actor if getattr(actor, "pk", None) else None, **data)
            audit_record(organization=organization, actor=actor, action="provider.create", instance=provider,
                         after=_provider_audit_view(provider))
            publish(organization, "provider.created", {"provider_id": str(provider.pk), "name": provider.name,
                                                       "provider_type": provider.provider_type},
                    actor=actor, component="providers")
    except IntegrityError:
        raise Conflict(f"A provider named {data['name']!r} already exists.",
                       errors=[{"field": "name", "message": "already exists"}])
    return provider


def provider_update(*, provider: Provider, actor, data: dict) -> Provider:
    data = dict(data)
    api_key = data.pop("api_key", None)
    if "base_url" in data:
        _check_base_url(organization=provider.organization, base_url=data["base_url"] or "")
    try:
        with transaction.atomic():
            provider = Provider.objects.select_for_update().get(pk=provider.pk)
            before = _provider_audit_view(provider)
            if api_key:
                if provider.credential_id:
                    credential_update(credential=provider.credential, actor=actor, changes={"value": api_key})
                else:
                    provider.credential = credential_create(
                        organization=provider.organization, actor=actor, name=f"provider:{provider.name}:{uuid.uuid4().hex[:6]}",
                        service_name=provider.provider_type, value=api_key)
            if data.get("is_default"):
                Provider.objects.for_org(provider.organization_id).exclude(pk=provider.pk).update(is_default=False)
            for key, value in data.items():
                setattr(provider, key, value)
            provider.save()
            audit_record(organization=provider.organization, actor=actor, action="provider.update", instance=provider,
                         before=before, after=_provider_audit_view(provider))
    except IntegrityError:
        raise Conflict("A provider with this name already exists.", errors=[{"field": "name", "message": "already exists"}])
    return provider


def provider_delete(*, provider: Provider, actor) -> None:
    with transaction.atomic():
        audit_record(organization=provider.organization, actor=actor, action="provider.delete", instance=provider,
                     before=_provider_audit_view(provider))
        credential = provider.credential
        provider.delete()
        if credential is not None and credential.name.startswith("provider:"):
            credential_delete(credential=credential, actor=actor)


def provider_record_validation(*, provider: Provider, ok: bool, error: str = "") -> None:
    Provider.objects.filter(pk=provider.pk).update(last_validated_at=timezone.now(), last_validation_ok=ok,
                                                   last_validation_error=error[:2000])


def provider_record_usage(*, provider: Provider, input_tokens: int, output_tokens: int, cost) -> None:
    """Add one call to the provider's usage of today (an upsert, safe under concurrency)."""
    from apps.agents.models import ProviderUsage

    today = timezone.now().date()
    increments = {"input_tokens": F("input_tokens") + input_tokens, "output_tokens": F("output_tokens") + output_tokens,
                  "cost": F("cost") + cost, "calls": F("calls") + 1}
    rows = ProviderUsage.objects.filter(provider=provider, day=today)
    if rows.update(**increments):
        return
    try:
        with transaction.atomic():
            ProviderUsage.objects.create(organization_id=provider.organization_id, provider=provider, day=today,
                                         input_tokens=input_tokens, output_tokens=output_tokens, cost=cost, calls=1)
    except IntegrityError:
        rows.update(**increments)


def model_config_create(*, organization, actor, data: dict) -> ModelConfig:
    try:
        with transaction.atomic():
            config = ModelConfig.objects.create(organization=organization,
                                                created_by=actor if getattr(actor, "pk", None) else None, **data)
            audit_record(organization=organization, actor=actor, action="model_config.create", instance=config,
                         after=snapshot(config))
    except IntegrityError:
        raise Conflict(f"A model named {data['name']!r} already exists.", errors=[{"field": "name", "message": "already exists"}])
    return config


def model_config_update(*, config: ModelConfig, actor, data: dict) -> ModelConfig:
    try:
        with transaction.atomic():
            before = snapshot(config)
            for key, value in data.items():
                setattr(config, key, value)
            config.save()
            audit_record(organization=config.organization, actor=actor, action="model_config.update", instance=config,
                         before=before, after=snapshot(config))
    except IntegrityError:
        raise Conflict("A model with this name already exists.", errors=[{"field": "name", "message": "already exists"}])
    return config


def model_config_delete(*, config: ModelConfig, actor) -> None:
    with transaction.atomic():
        audit_record(organization=config.organization, actor=actor, action="model_config.delete", instance=config,
                     before=snapshot(config))
        config.delete()


# --- tools -------------------------------------------------------------------------------------

#: configuration keys every tool takes beside its own schema's; the run engine reads them
#: (``requires_approval``: a person approves each call first — apps.approvals)
PLATFORM_TOOL_KEYS = {"requires_approval": bool}


def _validate_tool_configuration(*, config_schema: dict, configuration: dict) -> None:
    from apps.agents.tools.base import schema_errors

    own = {key: value for key, value in configuration.items() if key not in PLATFORM_TOOL_KEYS}
    errors = schema_errors(config_schema, own)
    errors += [f"$.{key}: must be a {kind.__name__}" for key, kind in PLATFORM_TOOL_KEYS.items()
               if key in configuration and not isinstance(configuration[key], kind)]
    if errors:
        raise exceptions.ValidationError({"configuration": errors})


def _check_schema(schema: dict, field: str) -> None:
    import jsonschema

    if not schema:
        return
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise exceptions.ValidationError({field: [f"Not a valid JSON schema: {exc.message}"]})


def tool_create(*, organization, actor, data: dict) -> Tool:
    from apps.agents.tools.custom import CUSTOM_CONFIG_SCHEMA

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
        _check_base_url(organization=organization, base_url=data["configuration"]["api_endpoint"])
    try:
        with transaction.atomic():
            tool = Tool.objects.create(organization=organization,
                                       created_by=actor if getattr(actor, "pk", None) else None, **data)
            audit_record(organization=organization, actor=actor, action="tool.create", instance=tool, after=snapshot(tool))
    except IntegrityError:
        raise Conflict(f"A tool named {data['name']!r} already exists.", errors=[{"field": "name", "message": "already exists"}])
    return tool


def tool_update(*, tool: Tool, actor, data: dict) -> Tool:
    data = dict(data)
    if tool.tool_type == ToolType.BUILTIN:
        locked = sorted(set(data) - {"configuration", "enabled", "description"})
        if locked:
            raise exceptions.ValidationError({key: ["Built-in tools only change configuration, enabled and description."]
                                              for key in locked})
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
            audit_record(organization=tool.organization, actor=actor, action="tool.update", instance=tool,
                         before=before, after=snapshot(tool))
    except IntegrityError:
        raise Conflict("A tool with this name already exists.", errors=[{"field": "name", "message": "already exists"}])
    return tool


def tool_toggle(*, tool: Tool, actor) -> Tool:
    return tool_update(tool=tool, actor=actor, data={"enabled": not tool.enabled})


def tool_delete(*, tool: Tool, actor) -> None:
    if tool.tool_type == ToolType.BUILTIN:
        raise Conflict("Built-in tools cannot be deleted; disable them instead.")
    with transaction.atomic():
        audit_record(organization=tool.organization, actor=actor, action="tool.delete", instance=tool, before=snapshot(tool))
        tool.delete()


# --- built-ins per organization ----------------------------------------------------------------

def organization_install_builtins(*, organization) -> dict:
    """Idempotent: the builtin provider, the built-in tools and the official templates."""
    from apps.agents import official
    from apps.agents.tools.base import builtin_spec
    from apps.agents.tools.builtins import BUILTIN_TOOLS

    builtin_spec("calculator")  # registers the built-ins
    with transaction.atomic():
        created = {"providers": 0, "tools": 0, "agent_templates": 0, "orchestration_templates": 0, "prompt_templates": 0}
        if not Provider.objects.for_org(organization).filter(provider_type="builtin").exists():
            has_default = Provider.objects.for_org(organization).filter(is_default=True).exists()
            Provider.objects.create(organization=organization, name="builtin", provider_type="builtin",
                                    default_model="builtin", is_default=not has_default)
            created["providers"] += 1
        existing = set(Tool.objects.for_org(organization).values_list("name", flat=True))
        tools = [Tool(organization=organization, name=spec.name, description=spec.description, tool_type=ToolType.BUILTIN,
                      configuration=dict(spec.default_configuration), config_schema=spec.config_schema,
                      parameters_schema=spec.parameters_schema, enabled=True)
                 for spec in BUILTIN_TOOLS.values() if spec.name not in existing]
        Tool.objects.bulk_create(tools)
        created["tools"] = len(tools)
        have = set(AgentTemplate.objects.for_org(organization).filter(is_official=True).values_list("official_key", flat=True))
        rows = [AgentTemplate(organization=organization, is_official=True, official_key=t["key"], name=t["name"],
                              description=t["description"], category=t["category"], agent_type=t["agent_type"],
                              config_yaml=t["config_yaml"]) for t in official.AGENT_TEMPLATES if t["key"] not in have]
        AgentTemplate.objects.bulk_create(rows)
        created["agent_templates"] = len(rows)
        have = set(OrchestrationTemplate.objects.for_org(organization).filter(is_official=True)
                   .values_list("official_key", flat=True))
        rows = [OrchestrationTemplate(organization=organization, is_official=True, official_key=t["key"], name=t["name"],
                                      description=t["description"], category=t["category"], pattern=t["pattern"],
                                      config_yaml=t["config_yaml"])
                for t in official.ORCHESTRATION_TEMPLATES if t["key"] not in have]
        OrchestrationTemplate.objects.bulk_create(rows)
        created["orchestration_templates"] = len(rows)
        have = set(PromptTemplate.objects.for_org(organization).filter(is_official=True).values_list("name", flat=True))
        rows = [PromptTemplate(organization=organization, is_official=True, **t)
                for t in official.PROMPT_TEMPLATES if t["name"] not in have]
        PromptTemplate.objects.bulk_create(rows)
        created["prompt_templates"] = len(rows)
    return created


# --- templates ---------------------------------------------------------------------------------

def template_variables(text: str) -> list[str]:
    """``{name}`` placeholders in order of first use (``{{``/``}}`` are literal braces)."""
    import string as _string

    names = []
    try:
        parsed = list(_string.Formatter().parse(text))
    except ValueError as exc:
        raise exceptions.ValidationError({"template": [f"Unbalanced braces: {exc}"]})
    for _, field_name, format_spec, conversion in parsed:
        if field_name is None:
            continue
        if not field_name.isidentifier() or format_spec or conversion:
            raise exceptions.ValidationError({"template": [
                f"Placeholder {{{field_name}{'!' + conversion if conversion else ''}{':' + format_spec if format_spec else ''}}} "
                "is not a plain variable name."]})
        if field_name not in names:
            names.append(field_name)
    return names


def template_render(*, template: PromptTemplate, variables: dict) -> str:
    import string as _string

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
    if model is PromptTemplate and "template" in data:
        found = template_variables(data["template"])
        declared = data.get("variables")
        if declared is None:
            data["variables"] = found
        else:
            undeclared = [n for n in found if n not in declared]
            if undeclared:
                raise exceptions.ValidationError({"variables": [
                    f"The template uses {', '.join(repr(n) for n in undeclared)}, not listed in variables."]})
    if "config_yaml" in data:
        parsed = parse_yaml_mapping(data["config_yaml"], field="config_yaml")
        if model is AgentTemplate:
            fields = agent_fields_from_yaml(parsed)
            if fields.get("tools"):
                try:
                    _check_tools(organization=organization, names=fields["tools"])
                except exceptions.ValidationError as exc:
                    raise exceptions.ValidationError({"config_yaml": exc.detail["tools"]})
    try:
        with transaction.atomic():
            if instance is None:
                instance = model.objects.create(organization=organization,
                                                created_by=actor if getattr(actor, "pk", None) else None, **data)
                audit_record(organization=organization, actor=actor, action=f"{label}.create", instance=instance,
                             after=snapshot(instance))
            elif action == "delete":
                audit_record(organization=organization, actor=actor, action=f"{label}.delete", instance=instance,
                             before=snapshot(instance))
                instance.delete()
            else:
                before = snapshot(instance)
                for key, value in data.items():
                    setattr(instance, key, value)
                instance.save()
                audit_record(organization=organization, actor=actor, action=f"{label}.update", instance=instance,
                             before=before, after=snapshot(instance))
    except IntegrityError:
        raise Conflict("A template with this name already exists.", errors=[{"field": "name", "message": "already exists"}])
    return instance


def template_create(model, *, organization, actor, data: dict):
    return _template_write(model, organization=organization, actor=actor, data=dict(data), action="create")


def template_update(*, instance, actor, data: dict):
    return _template_write(type(instance), organization=instance.organization, actor=actor, data=dict(data),
                           instance=instance, action="update")


def template_delete(*, instance, actor) -> None:
    _template_write(type(instance), organization=instance.organization, actor=actor, data={}, instance=instance,
                    action="delete")


def agent_template_use(*, template: AgentTemplate, actor, name: str | None = None, description: str | None = None) -> Agent:
    data = {"name": name or template.name, "config_yaml": template.config_yaml, "agent_type": template.agent_type,
            "description": description if description is not None else template.description}
    with transaction.atomic():
        with audit_covered():  # one row: the agent made from the template
            agent = agent_create(organization=template.organization, actor=actor, data=data,
                                 template=template.official_key or str(template.pk))
        audit_record(organization=template.organization, actor=actor, action="agent_template.use", instance=agent,
                     after={**snapshot(agent), "template_id": str(template.pk)})
    return agent


def orchestration_template_use(*, template: OrchestrationTemplate, actor, name: str | None = None) -> dict:
    """Create the orchestration when the crews app is installed (it provides orchestrations);
    otherwise answer with the configuration a client can create it from later."""
    config = parse_yaml_mapping(template.config_yaml, field="config_yaml")
    body = {"name": name or template.name, "pattern": template.pattern, "config_yaml": template.config_yaml,
            "config": config, "description": template.description}
    if orchestrations.available():
        orchestration = orchestrations.orchestration_create(organization=template.organization, actor=actor, data={
            "name": body["name"], "pattern": template.pattern, "config_yaml": template.config_yaml,
            "description": template.description})
        return {"created": True, "template_id": template.pk, "orchestration_id": orchestration.pk,
                "orchestration": body}
    return {"created": False, "template_id": template.pk, "orchestration_id": None, "orchestration": body,
            "detail": "Orchestrations are not available on this platform yet; create one from `orchestration` later."}


# --- services registry -------------------------------------------------------------------------

def service_create(*, organization, actor, data: dict) -> Service:
    if data.get("endpoint"):
        _check_base_url(organization=organization, base_url=data["endpoint"])
    try:
        with transaction.atomic():
            service = Service.objects.create(organization=organization,
                                             created_by=actor if getattr(actor, "pk", None) else None, **data)
            audit_record(organization=organization, actor=actor, action="service.create", instance=service,
                         after=snapshot(service))
            publish(organization, "service.registered", {"service_id": str(service.pk), "name": service.name,
                                                         "service_type": service.service_type},
                    actor=actor, component="services")
    except IntegrityError:
        raise Conflict(f"A {data.get('service_type', 'endpoint')} service named {data['name']!r} is already registered.",
                       errors=[{"field": "name", "message": "already registered"}])
    return service


def _upsert_service(*, organization, service_type: str, name: str, ref_id=None, endpoint: str = "",
                    capabilities=None, metadata=None) -> tuple[Service, bool]:
    defaults = {"ref_id": ref_id, "endpoint": endpoint or "", "capabilities": capabilities or [],
                "metadata": metadata or {}}
    service, created = Service.objects.update_or_create(organization=organization, service_type=service_type, name=name,
                                                        defaults=defaults)
    return service, created


def services_discover(*, organization, actor) -> dict:
    """Register the organization's agents, enabled tools, active providers and the endpoints
    listed in its settings (``service_endpoints: [{name, url}]``)."""
    from apps.agents.models import Agent as AgentModel

    counts = {"agents": 0, "tools": 0, "providers": 0, "endpoints": 0, "created": 0}
    with transaction.atomic():
        _lock(organization.pk, 0x2)
        for agent in AgentModel.objects.for_org(organization).only("id", "name", "agent_number", "tools", "agent_type"):
            _, created = _upsert_service(organization=organization, service_type=ServiceType.AGENT,
                                         name=f"kai-{agent.agent_number:03d} {agent.name}"[:200], ref_id=agent.pk,
                                         capabilities=list(agent.tools),
                                         metadata={"agent_number": agent.agent_number, "agent_type": agent.agent_type})
            counts["agents"] += 1
            counts["created"] += created
        for tool in Tool.objects.for_org(organization).filter(enabled=True).only("id", "name", "tool_type"):
            _, created = _upsert_service(organization=organization, service_type=ServiceType.TOOL, name=tool.name,
                                         ref_id=tool.pk, metadata={"tool_type": tool.tool_type})
            counts["tools"] += 1
            counts["created"] += created
        for provider in Provider.objects.for_org(organization).filter(is_active=True):
            _, created = _upsert_service(organization=organization, service_type=ServiceType.PROVIDER, name=provider.name,
                                         ref_id=provider.pk, endpoint=provider.base_url,
                                         metadata={"provider_type": provider.provider_type})
            counts["providers"] += 1
            counts["created"] += created
        for entry in (organization.settings or {}).get("service_endpoints") or []:
            if not isinstance(entry, dict) or not entry.get("name") or not entry.get("url"):
                continue
            _, created = _upsert_service(organization=organization, service_type=ServiceType.ENDPOINT,
                                         name=str(entry["name"])[:200], endpoint=str(entry["url"])[:500],
                                         capabilities=list(entry.get("capabilities") or []))
            counts["endpoints"] += 1
            counts["created"] += created
        audit_record(organization=organization, actor=actor, action="service.discover", model="agents.Service",
                     object_id="*", after=counts)
        publish(organization, "services.discovered", counts, actor=actor, component="services")
    return counts


def service_heartbeat(*, service: Service) -> None:
    from django.conf import settings

    cache.set(selectors.heartbeat_key("service", service.pk), timezone.now().isoformat(),
              timeout=settings.KAI_HEARTBEAT_TTL_SECONDS)
    if service.service_type == ServiceType.AGENT and service.ref_id:
        agent = Agent.objects.filter(pk=service.ref_id, organization_id=service.organization_id).first()
        if agent:
            agent_heartbeat(agent=agent)


def service_refresh(*, service: Service, actor) -> Service:
    """Probe now: an agent by its heartbeat, a tool by being enabled, a provider by its last
    validation, an endpoint by an HTTP GET (SSRF-guarded, 5 s)."""
    import time

    from django.conf import settings

    now = timezone.now()
    status, error, response_ms, last_seen = ServiceStatus.UNKNOWN, "", None, service.last_seen
    if service.service_type == ServiceType.AGENT:
        beats = selectors.heartbeats(kind="agent", ids=[service.ref_id]) if service.ref_id else {}
        beat = beats.get(str(service.ref_id))
        agent = Agent.objects.filter(pk=service.ref_id, organization_id=service.organization_id).first() if service.ref_id else None
        if agent is None:
            status, error = ServiceStatus.OFFLINE, "the agent no longer exists"
        elif beat:
            status, last_seen = (ServiceStatus.DEGRADED if agent.status == AgentStatus.ERROR else ServiceStatus.ONLINE), beat
        else:
            status, error = ServiceStatus.OFFLINE, f"no heartbeat in the last {settings.KAI_HEARTBEAT_TTL_SECONDS} s"
    elif service.service_type == ServiceType.TOOL:
        tool = Tool.objects.filter(pk=service.ref_id, organization_id=service.organization_id).first() if service.ref_id else None
        status = ServiceStatus.ONLINE if tool and tool.enabled else ServiceStatus.OFFLINE
        last_seen = now if tool and tool.enabled else last_seen
        error = "" if tool and tool.enabled else "the tool is disabled or gone"
    elif service.service_type == ServiceType.PROVIDER:
        provider = Provider.objects.filter(pk=service.ref_id, organization_id=service.organization_id).first() if service.ref_id else None
        if provider is None or not provider.is_active:
            status, error = ServiceStatus.OFFLINE, "the provider is inactive or gone"
        elif provider.provider_type == "builtin" or provider.last_validation_ok:
            status, last_seen = ServiceStatus.ONLINE, provider.last_validated_at or now
        elif provider.last_validation_ok is False:
            status, error = ServiceStatus.DEGRADED, provider.last_validation_error
    elif service.endpoint:
        from apps.agents.tools.base import ToolError
        from apps.agents.tools.custom import guarded_request

        started = time.perf_counter()
        try:
            result = guarded_request(organization=service.organization, method="GET", url=service.endpoint, headers={},
                                     timeout=5.0, max_bytes=1024)
            response_ms = round((time.perf_counter() - started) * 1000, 2)
            status = ServiceStatus.ONLINE if result["status"] < 500 else ServiceStatus.DEGRADED
            last_seen = now
            error = "" if result["status"] < 500 else f"HTTP {result['status']}"
        except ToolError as exc:
            status, error = ServiceStatus.OFFLINE, str(exc)
    with transaction.atomic():
        Service.objects.filter(pk=service.pk).update(status=status, last_error=error[:2000], last_seen=last_seen,
                                                     response_time_ms=response_ms, updated_at=now)
        service.refresh_from_db()
        publish(service.organization_id, "service.refreshed", {"service_id": str(service.pk), "status": status},
                actor=actor, component="services")
    return service


def service_delete(*, service: Service, actor) -> None:
    with transaction.atomic():
        audit_record(organization=service.organization, actor=actor, action="service.delete", instance=service,
                     before=snapshot(service))
        service.delete()


# --- deployments -------------------------------------------------------------------------------

DEPLOYMENT_KEY_PREFIX = "kdep_"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def deployment_create(*, organization, actor, agent: Agent | None, name: str | None, channels: list[str],
                      orchestration_id=None) -> tuple[Deployment, str]:
    """Deploy an agent, or (``agent=None``) the organization's orchestration ``orchestration_id``."""
    orchestration = None
    if agent is None:
        orchestration = orchestrations.orchestration_get(organization=organization, orchestration_id=orchestration_id)
        if orchestration is None:
            raise exceptions.NotFound("No such orchestration.")
    deployed = agent or orchestration
    prefix = "".join(secrets.choice(_ALPHABET) for _ in range(12))
    secret = "".join(secrets.choice(_ALPHABET) for _ in range(40))
    raw = f"{DEPLOYMENT_KEY_PREFIX}{prefix}_{secret}"
    with transaction.atomic():
        deployment = Deployment.objects.create(
            organization=organization, created_by=actor if getattr(actor, "pk", None) else None, agent=agent,
            orchestration_id=orchestration.pk if orchestration else orchestration_id, name=name or deployed.name,
            channels=channels, key_prefix=prefix, key_hash=_digest(raw))
        audit_record(organization=organization, actor=actor, action="deployment.create", instance=deployment,
                     after=snapshot(deployment))
        publish(organization, "deployment.started",
                {"deployment_id": str(deployment.pk), "agent_id": str(agent.pk) if agent else None,
                 "orchestration_id": str(orchestration.pk) if orchestration else None},
                agent=agent, actor=actor, owner=deployed.created_by, component="deployments")
    return deployment, raw


def deployment_stop(*, deployment: Deployment, actor) -> Deployment:
    """Stopping revokes: the deployment key stops working at once."""
    with transaction.atomic():
        before = snapshot(deployment)
        if deployment.status != DeploymentStatus.STOPPED:
            deployment.status = DeploymentStatus.STOPPED
            deployment.stopped_at = timezone.now()
            deployment.save(update_fields=["status", "stopped_at", "updated_at"])
            audit_record(organization=deployment.organization, actor=actor, action="deployment.update",
                         instance=deployment, before=before, after=snapshot(deployment))
            publish(deployment.organization_id, "deployment.stopped", {"deployment_id": str(deployment.pk)},
                    agent=deployment.agent_id, actor=actor, component="deployments")
    return deployment


def deployment_authenticate(*, deployment_id, raw_key: str) -> Deployment | None:
    import hmac

    if not raw_key or not raw_key.startswith(DEPLOYMENT_KEY_PREFIX):
        return None
    prefix = raw_key[len(DEPLOYMENT_KEY_PREFIX):].split("_", 1)[0]
    deployment = (Deployment.objects.select_related("organization", "agent")
                  .filter(key_prefix=prefix, status=DeploymentStatus.RUNNING).first())
    if deployment is None or str(deployment.pk) != str(deployment_id):
        return None
    if not hmac.compare_digest(deployment.key_hash, _digest(raw_key)):
        return None
    return deployment


def deployment_record_invocation(*, deployment: Deployment) -> None:
    Deployment.objects.filter(pk=deployment.pk).update(invocation_count=F("invocation_count") + 1,
                                                       last_invoked_at=timezone.now())


def deployment_invoke(*, deployment: Deployment, prompt: str, params: dict | None = None,
                      channel: str = "api") -> tuple[int, dict]:
    """Run a deployment once for a holder of its key (``channel``: api or mcp), as the deployment's
    creator: a run on a worker, waited for (``apps.agents.calls``); the call is counted and audited.
    Returns (HTTP status, body): 200 with the answer, 202 with the ``execution_id`` while it runs."""
    from apps.agents import calls

    if deployment.agent_id is None:
        status_code, result = _deployment_run_orchestration(deployment=deployment, prompt=prompt, params=params)
    else:
        status_code, result = calls.agent_call(agent=deployment.agent, actor=deployment.created_by, prompt=prompt,
                                               params=params, source="deployment",
                                               run_name=f"deployment {deployment.name} ({channel})")
    with transaction.atomic():
        deployment_record_invocation(deployment=deployment)
        audit_record(organization=deployment.organization, actor=deployment.created_by, action="deployment.invoke",
                     instance=deployment, actor_type="api_key",
                     after={"channel": channel, "agent_id": str(deployment.agent_id) if deployment.agent_id else None,
                            "orchestration_id": str(deployment.orchestration_id) if deployment.orchestration_id else None,
                            "execution_id": result.get("execution_id"), "tokens": result.get("tokens"),
                            "latency_ms": result.get("latency_ms")})
    return status_code, result


#: how long an invocation of a deployed orchestration waits for its run (on a worker)
DEPLOYMENT_RUN_WAIT_SECONDS = 120.0


def _deployment_run_orchestration(*, deployment: Deployment, prompt: str, params: dict | None) -> tuple[int, dict]:
    """Start the deployed orchestration's run (``inputs: {prompt}``) and wait for it; a run still
    going after the wait is answered 202 with its execution id and status."""
    from apps.runs.models import ExecutionStatus
    from apps.runs.services import wait_for_terminal

    orchestration = orchestrations.orchestration_get(organization=deployment.organization_id,
                                                     orchestration_id=deployment.orchestration_id)
    if orchestration is None:
        raise exceptions.NotFound("The deployed orchestration no longer exists.")
    started = time.perf_counter()
    execution = orchestrations.orchestration_start(orchestration=orchestration, actor=deployment.created_by,
                                                   inputs={"prompt": prompt}, params=params)
    execution = wait_for_terminal(execution_id=execution.pk, timeout=DEPLOYMENT_RUN_WAIT_SECONDS)
    result = execution.result if isinstance(execution.result, dict) else {}
    return (200 if execution.is_terminal else 202), {
        "output": result.get("output") if execution.status == ExecutionStatus.COMPLETED else None,
        "execution_id": str(execution.pk), "status": execution.status, "error": execution.error or "",
        "outputs": result.get("outputs") or {}, "agents_executed": result.get("agents_executed") or [],
        "cost": execution.cost, "trace_id": execution.trace_id,
        "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
