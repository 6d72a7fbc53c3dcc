"""Writes of the workflows app: definitions and versions, starting and cancelling runs, and the
webhook and agent-completion triggers. The DAG engine that advances runs is ``apps.workflows.engine``."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from datetime import timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from rest_framework import exceptions, status

from apps.agents import crypto
from apps.agents.crypto import decrypt, encrypt
from apps.agents.models import Agent
from apps.audit.services import audit_covered, audit_record, snapshot
from apps.events.services import publish
from apps.runs.models import TERMINAL_STATUSES, Execution, ExecutionKind
from apps.runs.services import execution_create, execution_transition
from apps.workflows.definition import validate_definition
from apps.workflows.engine import S, advance_on_commit, stop_live_steps, workflow_advance
from apps.workflows.models import TriggerType, Workflow, WorkflowRun, WorkflowVersion
from kai_platform.api.errors import codes
from kai_platform.api.errors.exceptions import Conflict, KaiAPIException

WORKFLOW_FIELDS = ("name", "description", "definition", "is_active")
WEBHOOK_TOLERANCE_SECONDS = 300
PRIORITY_NAMES = {"low": 2, "normal": 5, "high": 8}


class WorkflowValidationFailed(KaiAPIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "The workflow definition is invalid."
    error_type = "workflow_validation_failed"
    kai_code = codes.WORKFLOW_VALIDATION_FAILED


def _actor_or_none(actor):
    return actor if getattr(actor, "pk", None) and getattr(actor, "is_authenticated", False) else None


# --- definitions -------------------------------------------------------------------------------


def workflow_validate(*, organization, definition):
    """The checked definition (``.problems`` lists each problem with its step id)."""
    return validate_definition(definition, organization=organization)


def _checked_or_raise(*, organization, definition) -> dict:
    checked = workflow_validate(organization=organization, definition=definition)
    if not checked.valid:
        first = checked.problems[0]
        more = f" (and {len(checked.problems) - 1} more)" if len(checked.problems) > 1 else ""
        where = f"step {first.step_id!r}: " if first.step_id else ""
        raise WorkflowValidationFailed(
            f"The workflow definition is invalid — {where}{first.message}{more}",
            errors=[p.as_dict() for p in checked.problems],
        )
    return checked.definition


def _trigger_columns(*, organization, definition: dict) -> dict:
    trigger = definition.get("trigger") or {}
    agent = None
    if trigger.get("type") == TriggerType.AGENT_COMPLETION and trigger.get("source_agent"):
        agent = Agent.objects.for_org(organization).filter(agent_number=trigger["source_agent"]).first()
    return {"trigger_type": trigger.get("type") or TriggerType.MANUAL, "trigger_agent": agent}


def _new_secret() -> tuple[str, str]:
    secret = "whsec_" + secrets.token_urlsafe(32)
    return secret, encrypt(secret)[0]


def workflow_create(*, organization, actor, data: dict) -> tuple[Workflow, str]:
    """Create a workflow (version 1). Returns it and its webhook secret (shown once)."""
    values = {k: data[k] for k in WORKFLOW_FIELDS if k in data}
    values["definition"] = _checked_or_raise(organization=organization, definition=values.get("definition"))
    secret, encrypted = _new_secret()
    with transaction.atomic():
        workflow = Workflow.objects.create(
            organization=organization,
            created_by=_actor_or_none(actor),
            webhook_secret=encrypted,
            **_trigger_columns(organization=organization, definition=values["definition"]),
            **values,
        )
        WorkflowVersion.objects.create(
            organization=organization,
            created_by=_actor_or_none(actor),
            workflow=workflow,
            version=1,
            definition=workflow.definition,
        )
        audit_record(
            organization=organization,
            actor=actor,
            action="workflow.create",
            instance=workflow,
            after=snapshot(workflow, ["id", "name", "description", "definition", "version", "is_active"]),
        )
        publish(
            organization,
            "workflow.created",
            {"workflow_id": str(workflow.pk), "name": workflow.name, "version": 1},
            actor=actor,
            component="workflows",
        )
    return workflow, secret


def workflow_update(*, workflow: Workflow, actor, data: dict) -> Workflow:
    """Partial update; a changed definition becomes a new version (runs keep the one they ran)."""
    values = {k: data[k] for k in WORKFLOW_FIELDS if k in data}
    if "definition" in values:
        values["definition"] = _checked_or_raise(organization=workflow.organization, definition=values["definition"])
    with transaction.atomic():
        workflow = Workflow.objects.select_for_update().get(pk=workflow.pk)
        fields = ["id", "name", "description", "definition", "version", "is_active"]
        before = snapshot(workflow, fields)
        new_version = "definition" in values and values["definition"] != workflow.definition
        for key, value in values.items():
            setattr(workflow, key, value)
        if new_version:
            workflow.version += 1
            for key, value in _trigger_columns(
                organization=workflow.organization, definition=workflow.definition
            ).items():
                setattr(workflow, key, value)
        workflow.save()
        if new_version:
            WorkflowVersion.objects.create(
                organization=workflow.organization,
                created_by=_actor_or_none(actor),
                workflow=workflow,
                version=workflow.version,
                definition=workflow.definition,
            )
        audit_record(
            organization=workflow.organization,
            actor=actor,
            action="workflow.update",
            instance=workflow,
            before=before,
            after=snapshot(workflow, fields),
        )
        publish(
            workflow.organization_id,
            "workflow.updated",
            {"workflow_id": str(workflow.pk), "version": workflow.version, "changed_fields": sorted(values)},
            actor=actor,
            component="workflows",
        )
    return workflow


def workflow_delete(*, workflow: Workflow, actor) -> None:
    """Delete the workflow; its live runs are cancelled first (their step runs stop spending)."""
    with transaction.atomic():
        workflow = Workflow.objects.select_for_update().get(pk=workflow.pk)
        live_runs = list(
            WorkflowRun.objects.filter(workflow=workflow)
            .select_related("execution")
            .exclude(execution__status__in=TERMINAL_STATUSES)
        )
        for run in live_runs:  # every step flagged before any event is published (lock order)
            stop_live_steps(run, include_fallback=True, reason="the workflow was deleted")
        for run in live_runs:
            execution_transition(
                execution_id=run.execution_id, to=S.CANCELLED, reason="the workflow was deleted", error=""
            )
        audit_record(
            organization=workflow.organization,
            actor=actor,
            action="workflow.delete",
            instance=workflow,
            before=snapshot(workflow, ["id", "name", "description", "definition", "version", "is_active"]),
        )
        publish(
            workflow.organization_id,
            "workflow.deleted",
            {"workflow_id": str(workflow.pk)},
            actor=actor,
            component="workflows",
        )
        workflow.delete()


def workflow_rotate_webhook_secret(*, workflow: Workflow, actor) -> str:
    secret, encrypted = _new_secret()
    with transaction.atomic():
        Workflow.objects.filter(pk=workflow.pk).update(webhook_secret=encrypted, updated_at=timezone.now())
        audit_record(
            organization=workflow.organization,
            actor=actor,
            action="workflow.rotate_webhook_secret",
            instance=workflow,
            after={"webhook_secret": "rotated"},
        )
    return secret


def workflow_start(
    *,
    workflow: Workflow,
    actor,
    inputs: dict | None = None,
    trigger_type: str = TriggerType.MANUAL,
    trigger_source: str = "",
    trigger_data: dict | None = None,
    priority: int | str = 5,
    dedupe_key: str | None = None,
) -> WorkflowRun:
    """Start a run of the workflow's current version. With ``dedupe_key`` a second call with the
    same key (a redelivered webhook, a schedule tick) returns the first run."""
    if isinstance(priority, str):
        priority = PRIORITY_NAMES.get(priority, 5)
    organization = workflow.organization
    with transaction.atomic():
        workflow = Workflow.objects.select_related("organization").get(pk=workflow.pk)
        if not workflow.is_active:
            raise Conflict(
                f"Workflow {workflow.name!r} is not active.",
                code=codes.WORKFLOW_EXECUTION_FAILED,
                errors=[{"field": "is_active", "message": "is false"}],
            )
        version = WorkflowVersion.objects.get(workflow=workflow, version=workflow.version)
        with audit_covered():  # the workflow.execute row below names this run
            execution = execution_create(
                organization=organization,
                actor=actor,
                kind=ExecutionKind.WORKFLOW,
                run_name=f"{workflow.name} v{version.version}",
                inputs=inputs or {},
                definition={"workflow_id": str(workflow.pk), "version": version.version, "name": workflow.name},
                priority=priority,
                dedupe_key=dedupe_key,
                enqueue=False,
            )
        existing = WorkflowRun.objects.filter(execution=execution).first()
        if existing is not None:
            return existing
        run = _run_begin(
            workflow=workflow,
            version=version,
            execution=execution,
            actor=actor,
            inputs=inputs,
            trigger_type=trigger_type,
            trigger_source=trigger_source,
            trigger_data=trigger_data,
        )
        _run_announce(run=run, actor=actor)
        advance_on_commit(execution.pk)
        if run.deadline_at is not None:
            advance_on_commit(execution.pk, countdown=version.definition["timeout_ms"] / 1000 + 0.05)
    return run


def _run_begin(
    *,
    workflow: Workflow,
    version: WorkflowVersion,
    execution,
    actor,
    inputs: dict | None,
    trigger_type: str,
    trigger_source: str,
    trigger_data: dict | None,
) -> WorkflowRun:
    """The execution set running and the run's row (with its deadline, when the version sets one)."""
    # the DAG engine drives this execution, not a worker: no heartbeat, so the reaper leaves it be
    execution_transition(
        execution_id=execution.pk,
        to=S.PREPARING,
        reason=f"{trigger_type} trigger",
        worker="workflow engine",
        heartbeat_at=None,
    )
    execution_transition(execution_id=execution.pk, to=S.RUNNING, reason="workflow started", heartbeat_at=None)
    now = timezone.now()
    timeout_ms = version.definition.get("timeout_ms")
    run = WorkflowRun.objects.create(
        organization=workflow.organization,
        created_by=_actor_or_none(actor),
        workflow=workflow,
        workflow_version=version,
        version=version.version,
        execution=execution,
        trigger_type=trigger_type,
        trigger_source=(trigger_source or trigger_type)[:300],
        trigger_data=trigger_data or {},
        inputs=inputs or {},
        deadline_at=now + timedelta(milliseconds=timeout_ms) if timeout_ms else None,
    )
    Workflow.objects.filter(pk=workflow.pk).update(execution_count=F("execution_count") + 1, last_executed=now)
    return run


def _run_announce(*, run: WorkflowRun, actor) -> None:
    """The audit row and the ``workflow.triggered`` event of a run just started."""
    workflow, execution, trigger_type = run.workflow, run.execution, run.trigger_type
    audit_record(
        organization=workflow.organization,
        actor=actor,
        action="workflow.execute",
        instance=workflow,
        after={
            "run_id": str(run.pk),
            "execution_id": str(execution.pk),
            "version": run.version,
            "trigger": trigger_type,
        },
    )
    publish(
        workflow.organization,
        "workflow.triggered",
        {
            "workflow_id": str(workflow.pk),
            "trigger_source": run.trigger_source,
            "execution_id": str(execution.pk),
            "run_id": str(run.pk),
            "version": run.version,
            "trigger_type": trigger_type,
        },
        execution=execution,
        actor=actor,
        component="workflows",
    )


def workflow_run_cancel(*, run: WorkflowRun, actor, reason: str = "cancelled by user") -> WorkflowRun:
    """Cancel a run: its live steps are cancelled (a running one stops within seconds), then the
    run ends CANCELLED."""
    execution = run.execution
    if execution.is_terminal:
        raise Conflict(
            f"The run already ended ({execution.status}).",
            errors=[{"field": "status", "message": f"is {execution.status}"}],
        )
    with transaction.atomic():
        changed = (
            Execution.objects.filter(pk=execution.pk)
            .exclude(status__in=TERMINAL_STATUSES)
            .update(cancel_requested=True, updated_at=timezone.now())
        )
        if not changed:
            raise Conflict("The run already ended.")
        audit_record(
            organization=run.organization,
            actor=actor,
            action="workflow.cancel",
            instance=run,
            after={"cancel_requested": True, "reason": reason},
        )
    workflow_advance(execution_id=execution.pk)
    run.refresh_from_db()
    return run


# --- triggers ----------------------------------------------------------------------------------


def _matches(conditions_: dict, data: dict) -> bool:
    """Trigger conditions: every ``"a.b.c": expected`` pair equals the value at that path."""
    for path, expected in (conditions_ or {}).items():
        value: object = data
        for part in str(path).split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value != expected:
            return False
    return True


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def workflows_rotate_secrets(*, batch_size: int = 500) -> int:
    """Re-encrypt every workflow's webhook secret under the newest ``KAI_SECRET_KEYS`` key (part of
    ``rotate_secrets``). Raises ``SecretUnreadable`` when a secret opens under no configured key."""
    rotated, last_pk = 0, None
    while True:
        with transaction.atomic():
            queryset = Workflow.objects.select_for_update().exclude(webhook_secret="").order_by("pk")
            if last_pk is not None:
                queryset = queryset.filter(pk__gt=last_pk)
            batch = list(queryset.only("pk", "webhook_secret")[:batch_size])
            for workflow in batch:
                token, _key_id = crypto.rotate(workflow.webhook_secret)
                Workflow.objects.filter(pk=workflow.pk).update(webhook_secret=token)
        rotated += len(batch)
        if len(batch) < batch_size:
            return rotated
        last_pk = batch[-1].pk


def workflow_webhook(
    *, token: str, body: bytes, timestamp: str | None, signature: str | None, delivery_id: str | None = None
) -> WorkflowRun | None:
    """A signed webhook delivery (``X-Kai-Timestamp``, ``X-Kai-Signature: sha256=HMAC(secret,
    "<timestamp>.<body>")``). 404 for an unknown URL, 401 for a missing/bad/stale signature.
    Returns the run, or None when the trigger's conditions do not match the payload."""
    workflow = Workflow.objects.select_related("organization").filter(webhook_token=token).first()
    if workflow is None:
        raise exceptions.NotFound("No such webhook.")
    if not timestamp or not signature:
        raise exceptions.AuthenticationFailed("The delivery is not signed (X-Kai-Timestamp and X-Kai-Signature).")
    try:
        age = abs(time.time() - int(timestamp))
    except ValueError:
        raise exceptions.AuthenticationFailed("X-Kai-Timestamp is not a Unix time in seconds.")
    expected = webhook_signature(decrypt(workflow.webhook_secret), timestamp, body)
    if not hmac.compare_digest(expected, signature.strip()):
        raise exceptions.AuthenticationFailed("The signature does not match.")
    if age > WEBHOOK_TOLERANCE_SECONDS:
        raise exceptions.AuthenticationFailed(f"The delivery is older than {WEBHOOK_TOLERANCE_SECONDS} s.")
    if workflow.trigger_type != TriggerType.WEBHOOK:
        raise Conflict("This workflow is not triggered by webhooks.", code=codes.WORKFLOW_EXECUTION_FAILED)
    try:
        payload = json.loads(body.decode() or "{}")
    except (ValueError, UnicodeDecodeError):
        raise exceptions.ValidationError({"body": ["Must be a JSON object."]})
    if not isinstance(payload, dict):
        raise exceptions.ValidationError({"body": ["Must be a JSON object."]})
    if not _matches((workflow.definition.get("trigger") or {}).get("conditions") or {}, payload):
        return None
    return workflow_start(
        workflow=workflow,
        actor=None,
        inputs=payload,
        trigger_type=TriggerType.WEBHOOK,
        trigger_source="webhook" + (f" {delivery_id}" if delivery_id else ""),
        trigger_data={"delivery_id": delivery_id},
        dedupe_key=f"workflow-webhook:{workflow.pk}:{delivery_id}"[:200] if delivery_id else None,
    )


AGENT_COMPLETION_KINDS = (ExecutionKind.AGENT_TASK, ExecutionKind.AGENT_COMMAND, ExecutionKind.AGENT_EXECUTE)


def workflow_on_agent_completion(*, execution_id) -> list[str]:
    """Start the active agent_completion workflows whose source agent just completed a run (once
    per workflow and run: a redelivery finds the runs by their dedupe key)."""
    execution = Execution.objects.select_related("agent", "organization").filter(pk=execution_id).first()
    if execution is None or execution.agent is None or execution.status != S.COMPLETED:
        return []
    started = []
    data = {
        "agent_number": execution.agent.agent_number,
        "agent_id": str(execution.agent_id),
        "execution_id": str(execution.pk),
        "kind": execution.kind,
        "status": execution.status,
        "result": execution.result,
    }
    for workflow in Workflow.objects.for_org(execution.organization_id).filter(
        trigger_type=TriggerType.AGENT_COMPLETION, trigger_agent=execution.agent, is_active=True
    ):
        if not _matches((workflow.definition.get("trigger") or {}).get("conditions") or {}, data):
            continue
        run = workflow_start(
            workflow=workflow,
            actor=None,
            inputs=data,
            trigger_type=TriggerType.AGENT_COMPLETION,
            trigger_source=f"agent #{execution.agent.agent_number} completed {execution.pk}",
            trigger_data=data,
            dedupe_key=f"workflow-agent:{workflow.pk}:{execution.pk}",
        )
        started.append(str(run.pk))
    return started
