"""``audit_record`` — call it inside the transaction of every service write."""

from __future__ import annotations

import contextlib
import contextvars
import re
from typing import Any

import orjson
from django.db import models

from apps.audit.models import ActorType, AuditEvent
from kai_platform.api.renderers import dumps
from kai_platform.logging import request_id_var, request_state

REDACTED = "[redacted]"
_SECRET_KEY_RE = re.compile(
    r"pass(word)?|secret|token|key_hash|api_?key|private_?key|credential|encrypted|signature|otp", re.I
)


def redact(value: Any) -> Any:
    """Replace the values of secret-looking keys, at any depth."""
    if isinstance(value, dict):
        return {k: (REDACTED if _SECRET_KEY_RE.search(str(k)) else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def snapshot(instance: models.Model, fields: list[str] | None = None) -> dict:
    """A JSON-safe dict of a model instance's concrete fields (FKs as ids), secrets redacted."""

    data = {}
    for field in instance._meta.concrete_fields:
        if fields is not None and field.name not in fields:
            continue
        data[field.attname if field.is_relation else field.name] = getattr(instance, field.attname)
    return redact(orjson.loads(dumps(data)))


def diff(before: dict | None, after: dict | None) -> tuple[dict | None, dict | None]:
    """Keep only the keys that changed (both sides), for update rows."""
    if before is None or after is None:
        return before, after
    keys = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    return {k: before.get(k) for k in keys}, {k: after.get(k) for k in keys}


#: set by ``audit_as``: the action recorded instead of the service's own (model, object and diff stay)
_action_override: contextvars.ContextVar[str | None] = contextvars.ContextVar("kai_audit_action", default=None)


@contextlib.contextmanager
def audit_as(action: str):
    """Rows recorded inside are labelled ``action`` (e.g. ``system.rollback``): a change applied
    through another app's service keeps that service's single audit row and its diff, but says
    why it happened."""
    token = _action_override.set(action)
    try:
        yield
    finally:
        _action_override.reset(token)


_covered: contextvars.ContextVar[bool] = contextvars.ContextVar("kai_audit_covered", default=False)


@contextlib.contextmanager
def audit_covered():
    """Inside, ``audit_record`` writes nothing: the caller records the one row that covers these
    writes (registering records ``user.register``, not also the organization and membership it
    makes; a schedule's run-now records ``schedule.run_now``, not also the run it creates)."""
    token = _covered.set(True)
    try:
        yield
    finally:
        _covered.reset(token)


def _audit_row(
    *,
    organization,
    actor,
    action: str,
    instance: models.Model | None = None,
    model: str | None = None,
    object_id: str | None = None,
    before: dict | None = None,
    after: dict | None = None,
    actor_type: str | None = None,
    state: dict,
) -> AuditEvent:
    before, after = diff(before, after)  # a change records only the fields that changed
    actor_user = actor if getattr(actor, "is_authenticated", False) else None
    return AuditEvent(
        organization_id=getattr(organization, "pk", organization),
        actor=actor_user,
        actor_type=actor_type or state.get("actor_type") or (ActorType.USER if actor_user else ActorType.SYSTEM),
        action=_action_override.get() or action,
        model=model or (instance._meta.label if instance is not None else ""),
        object_id=str(object_id if object_id is not None else (instance.pk if instance is not None else "")),
        before=redact(before) if before is not None else None,
        after=redact(after) if after is not None else None,
        request_id=request_id_var.get() if request_id_var.get() != "-" else "",
        ip=state.get("ip") or None,
        user_agent=state.get("user_agent", ""),
    )


def audit_record(
    *,
    organization,
    actor,
    action: str,
    instance: models.Model | None = None,
    model: str | None = None,
    object_id: str | None = None,
    before: dict | None = None,
    after: dict | None = None,
    actor_type: str | None = None,
) -> AuditEvent | None:
    if _covered.get():
        return None
    row = _audit_row(
        organization=organization,
        actor=actor,
        action=action,
        instance=instance,
        model=model,
        object_id=object_id,
        before=before,
        after=after,
        actor_type=actor_type,
        state=request_state(),
    )
    row.save(force_insert=True)
    return row


def audit_row(
    *,
    organization,
    actor,
    action: str,
    instance: models.Model | None = None,
    model: str | None = None,
    object_id: str | None = None,
    before: dict | None = None,
    after: dict | None = None,
    actor_type: str | None = None,
) -> AuditEvent | None:
    """The row ``audit_record`` would write, unsaved (None inside ``audit_covered``): for a service
    that writes it in a statement of its own with its other rows."""
    if _covered.get():
        return None
    return _audit_row(
        organization=organization,
        actor=actor,
        action=action,
        instance=instance,
        model=model,
        object_id=object_id,
        before=before,
        after=after,
        actor_type=actor_type,
        state=request_state(),
    )


def audit_record_many(entries: list[dict]) -> list[AuditEvent]:
    """``audit_record`` of many writes in ONE INSERT (a bulk service: one row per write it made,
    as if each had been recorded alone). Each item holds ``audit_record``'s arguments."""
    if _covered.get() or not entries:
        return []
    state = request_state()
    return AuditEvent.objects.bulk_create([_audit_row(**entry, state=state) for entry in entries])
