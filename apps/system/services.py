"""System modifications: apply a change to an agent's configuration, a workflow definition or the
organization's settings through the owning app's service, keep its before/after state in a
``SystemModification``, and roll it back.

Each change is written by the owning service, which records the one audit row of the change
(with its diff); ``audit_as`` labels that row ``system.modify`` / ``system.rollback``.
"""

from __future__ import annotations

import importlib

import orjson
from django.apps import apps as django_apps
from django.db import transaction
from django.utils import timezone
from rest_framework import exceptions

from apps.accounts.models import Organization
from apps.accounts.services import organization_settings_update
from apps.agents.models import AGENT_CONFIG_FIELDS, Agent
from apps.agents.services import agent_update
from apps.audit.services import audit_as, audit_record
from apps.events.services import publish
from apps.system.models import Maintenance, ModificationType, SystemAlert, SystemModification
from kai_platform.api.errors import Conflict as ConflictError
from kai_platform.api.renderers import dumps


def _json_safe(value):
    return orjson.loads(dumps(value))


# --- targets: how each modification type reads and writes its state ---------------------------


class Target:
    """Reads the current state of the keys a change touches, and writes values through the
    owning app's service (which validates and audits)."""

    model_label = ""

    def __init__(self, organization, target_id):
        self.organization = organization
        self.target_id = target_id

    def validate_keys(self, keys) -> None:
        pass

    def state(self, keys) -> dict:
        raise NotImplementedError

    def write(self, values: dict, actor) -> None:
        raise NotImplementedError


class AgentTarget(Target):
    model_label = "agents.Agent"

    def __init__(self, organization, target_id):
        super().__init__(organization, target_id)

        if not target_id:
            raise exceptions.ValidationError({"target_id": ["An agent_config change names the agent (target_id)."]})
        try:
            self.agent = Agent.objects.for_org(organization).get(pk=target_id)
        except (Agent.DoesNotExist, ValueError, exceptions.ValidationError):
            raise exceptions.NotFound(f"No agent {target_id} in this organization.")
        except Exception:  # malformed UUID
            raise exceptions.NotFound(f"No agent {target_id} in this organization.")
        self.target_id = str(self.agent.pk)

    def validate_keys(self, keys) -> None:
        unknown = sorted(set(keys) - set(AGENT_CONFIG_FIELDS))
        if unknown:
            raise exceptions.ValidationError(
                {
                    "changes": [
                        f"Not agent configuration: {', '.join(unknown)}. Allowed: {', '.join(AGENT_CONFIG_FIELDS)}."
                    ]
                }
            )

    def state(self, keys) -> dict:
        self.agent.refresh_from_db()
        return _json_safe({key: getattr(self.agent, key) for key in keys})

    def write(self, values: dict, actor) -> None:
        # deferred: start-up — this module loads at start in every process; the serializers load on first use
        from apps.agents.serializers import AgentSerializer

        serializer = AgentSerializer(self.agent, data=values, partial=True)
        serializer.is_valid(raise_exception=True)
        self.agent = agent_update(agent=self.agent, actor=actor, data=serializer.validated_data)


class SettingsTarget(Target):
    """Organization settings (``system_setting``) or the ``architecture`` key within them."""

    model_label = "accounts.Organization"
    section: str | None = None

    def __init__(self, organization, target_id):
        super().__init__(organization, str(organization.pk))

    def _settings(self) -> dict:
        self.organization.refresh_from_db(fields=["settings"])
        settings = self.organization.settings or {}
        return settings.get(self.section) or {} if self.section else settings

    def state(self, keys) -> dict:
        current = self._settings()
        return _json_safe({key: current.get(key) for key in keys})  # absent → None (rollback removes it)

    def write(self, values: dict, actor) -> None:
        if self.section:
            merged = dict(self._settings())
            for key, value in values.items():
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
            values = {self.section: merged}
        organization_settings_update(organization=self.organization, actor=actor, changes=values)


class ArchitectureTarget(SettingsTarget):
    section = "architecture"


class WorkflowTarget(Target):
    """A workflow definition, through ``apps.workflows.services.workflow_update`` when that app
    provides one; otherwise workflow changes are refused with a clear error."""

    def __init__(self, organization, target_id):
        super().__init__(organization, target_id)
        model = workflow_model()
        update = _workflow_update_service()
        if model is None or update is None:
            raise exceptions.ValidationError(
                {"type": ["Workflow changes need the workflows app, which is not available on this installation."]}
            )
        self.model_label = model._meta.label
        try:
            self.workflow = model.objects.for_org(organization).get(pk=target_id)
        except Exception:
            raise exceptions.NotFound(f"No workflow {target_id} in this organization.")
        self.target_id = str(self.workflow.pk)
        self._update = update

    def validate_keys(self, keys) -> None:
        editable = {
            f.name
            for f in self.workflow._meta.concrete_fields
            if f.editable and not f.primary_key and not f.is_relation and f.name not in {"created_at", "updated_at"}
        }
        unknown = sorted(set(keys) - editable)
        if unknown:
            raise exceptions.ValidationError({"changes": [f"Not workflow fields: {', '.join(unknown)}."]})

    def state(self, keys) -> dict:
        self.workflow.refresh_from_db()
        return _json_safe({key: getattr(self.workflow, key) for key in keys})

    def write(self, values: dict, actor) -> None:
        self._update(workflow=self.workflow, actor=actor, data=values)


def workflow_model():
    if not django_apps.is_installed("apps.workflows"):
        return None
    try:
        return django_apps.get_model("workflows", "Workflow")
    except LookupError:
        return None


def _workflow_update_service():
    try:
        module = importlib.import_module("apps.workflows.services")
    except ImportError:
        return None
    return getattr(module, "workflow_update", None)


TARGETS = {
    ModificationType.AGENT_CONFIG: AgentTarget,
    ModificationType.WORKFLOW_CHANGE: WorkflowTarget,
    ModificationType.SYSTEM_SETTING: SettingsTarget,
    ModificationType.ARCHITECTURE_CHANGE: ArchitectureTarget,
}


def _impact(mod_type: str, keys) -> str:
    keys = sorted(keys)
    if mod_type == ModificationType.AGENT_CONFIG:
        runs = "new runs of this agent use the new configuration; running ones keep theirs"
        return f"Agent fields {', '.join(keys)} change; {runs}."
    if mod_type == ModificationType.WORKFLOW_CHANGE:
        return f"Workflow fields {', '.join(keys)} change; runs started from now on use the new definition."
    if mod_type == ModificationType.ARCHITECTURE_CHANGE:
        return f"Architecture metadata {', '.join(keys)} changes; no run is affected."
    return f"Organization settings {', '.join(keys)} change for every member and new run."


# --- services ----------------------------------------------------------------------------------


def modification_apply(
    *, organization, actor, type: str, changes: dict, target_id: str | None = None, description: str = ""
) -> SystemModification:
    """Apply ``changes`` to the target and record the modification (one audit row, ``system.modify``)."""
    if not isinstance(changes, dict) or not changes:
        raise exceptions.ValidationError({"changes": ["Give at least one field to change."]})
    target = TARGETS[ModificationType(type)](organization, target_id)
    target.validate_keys(changes)
    with transaction.atomic():
        before = target.state(changes)
        with audit_as("system.modify"):
            target.write(dict(changes), actor)
        after = target.state(changes)
        modification = SystemModification.objects.create(
            organization=organization,
            created_by=_user(actor),
            applied_by=_user(actor),
            type=type,
            description=description or f"{ModificationType(type).label}: {', '.join(sorted(changes))}",
            target_model=target.model_label,
            target_id=str(target.target_id or ""),
            before_state=before,
            after_state=after,
            rollback_available=before != after,
            impact_assessment=_impact(type, changes),
        )
        _publish_change(organization, modification, actor)
    return modification


def modification_rollback(
    *, organization, actor, modification: SystemModification | None = None, force: bool = False
) -> SystemModification:
    """Restore the state before ``modification`` (default: the newest one that can be rolled back).
    409 when the target changed since, unless ``force``. The rollback is itself a modification."""
    with transaction.atomic():
        queryset = SystemModification.objects.for_org(organization).select_for_update()
        if modification is None:
            modification = queryset.filter(rollback_available=True).order_by("-applied_at").first()
            if modification is None:
                raise exceptions.NotFound("There is no modification to roll back.")
        else:
            modification = queryset.get(pk=modification.pk)
        if not modification.rollback_available:
            raise ConflictError("This modification was already rolled back or cannot be rolled back.")
        target = TARGETS[ModificationType(modification.type)](organization, modification.target_id)
        keys = list(modification.after_state)
        current = target.state(keys)
        if current != modification.after_state and not force:
            changed = sorted(k for k in keys if current.get(k) != modification.after_state.get(k))
            raise ConflictError(
                f"{', '.join(changed)} changed since this modification; roll back the newer "
                f"change first or pass force=true."
            )
        with audit_as("system.rollback"):
            target.write(dict(modification.before_state), actor)
        restored = target.state(keys)
        modification.rollback_available = False
        modification.rolled_back_at = timezone.now()
        modification.save(update_fields=["rollback_available", "rolled_back_at", "updated_at"])
        rollback = SystemModification.objects.create(
            organization=organization,
            created_by=_user(actor),
            applied_by=_user(actor),
            type=modification.type,
            description=f"Rollback of {modification.pk}: {modification.description}"[:500],
            target_model=modification.target_model,
            target_id=modification.target_id,
            before_state=current,
            after_state=restored,
            rollback_available=False,
            rollback_of=modification,
            impact_assessment=_impact(modification.type, keys),
        )
        _publish_change(organization, rollback, actor)
    return rollback


def _user(actor):
    return actor if getattr(actor, "is_authenticated", False) else None


def _publish_change(organization, modification: SystemModification, actor) -> None:
    publish(
        organization,
        "system.architecture_updated",
        {
            "changes": [
                {
                    "id": str(modification.pk),
                    "type": modification.type,
                    "description": modification.description,
                    "target_model": modification.target_model,
                    "target_id": modification.target_id,
                    "rollback_of": str(modification.rollback_of_id) if modification.rollback_of_id else None,
                }
            ]
        },
        actor=actor,
        component="system",
    )


# --- operator broadcasts: system alerts and maintenance mode (docs/realtime.md) ----------------


def _broadcast(type_: str, data: dict, *, severity: str = "info") -> int:
    """``publish`` one event to every active organization (their members' sockets hear it)."""
    reached = 0
    for organization in Organization.objects.filter(is_active=True).only("id").iterator():
        publish(organization, type_, data, component="system", severity=severity)
        reached += 1
    return reached


def alert_payload(alert) -> dict:
    """Seed 004's ``system_alert`` data."""
    return {
        "alert_id": alert.alert_id,
        "severity": alert.severity,
        "type": alert.type,
        "message": alert.message,
        "affected_components": list(alert.affected_components or []),
        "status": alert.status,
        "estimated_resolution": alert.estimated_resolution.isoformat().replace("+00:00", "Z")
        if alert.estimated_resolution
        else None,
    }


def _alert_severity(severity: str) -> str:
    return {"info": "info", "warning": "warning", "error": "error", "critical": "critical"}.get(severity, "warning")


@transaction.atomic
def system_alert_broadcast(
    *,
    actor,
    severity: str,
    message: str,
    type: str = "operator_notice",
    affected_components=(),
    status: str = "investigating",
    estimated_resolution=None,
):
    """Record an operator alert and send it to every organization as ``system.alert``."""
    alert = SystemAlert.objects.create(
        severity=severity,
        message=message,
        type=type or "operator_notice",
        affected_components=list(affected_components or []),
        status=status,
        estimated_resolution=estimated_resolution,
        created_by=actor if getattr(actor, "pk", None) else None,
    )
    alert.organizations_reached = _broadcast("system.alert", alert_payload(alert), severity=_alert_severity(severity))
    alert.save(update_fields=["organizations_reached"])
    audit_record(organization=None, actor=actor, action="system.alert", instance=alert, after=alert_payload(alert))
    return alert


@transaction.atomic
def system_alert_update(*, actor, alert, status: str):
    """A new status of an alert (e.g. ``resolved``), announced like the alert itself."""
    before = alert.status
    alert.status = status
    alert.save(update_fields=["status", "updated_at"])
    _broadcast(
        "system.alert",
        alert_payload(alert),
        severity="info" if status == "resolved" else _alert_severity(alert.severity),
    )
    audit_record(
        organization=None,
        actor=actor,
        action="system.alert.update",
        instance=alert,
        before={"status": before},
        after={"status": status},
    )
    return alert


def maintenance_payload(state) -> dict:
    """Seed 004's ``maintenance_mode`` data (also ``GET system/maintenance``)."""
    return {
        "enabled": state.active,
        "message": state.message,
        "until": state.until.isoformat().replace("+00:00", "Z") if state.until else None,
        "started_at": state.started_at.isoformat().replace("+00:00", "Z") if state.started_at else None,
        "retry_after": state.retry_after if state.active else None,
    }


@transaction.atomic
def maintenance_set(*, actor, enabled: bool, message: str = "", until=None, disconnect_seconds=None):
    """Turn maintenance on or off. While on, new runs are refused (``selectors.ensure_no_maintenance``);
    every organization hears ``system.maintenance`` (hub ``maintenance_mode``). With
    ``disconnect_seconds``, hub sockets are warned and closed (1001) that many seconds later."""
    # deferred: cycle — apps.system.selectors imports this module at load
    from apps.system import selectors

    row, _ = Maintenance.objects.select_for_update().get_or_create(scope="platform")
    before = {"enabled": row.enabled, "message": row.message, "until": _json_safe(row.until)}
    if enabled and not (row.enabled and (row.until is None or row.until > timezone.now())):
        row.started_at = timezone.now()
    row.enabled, row.message, row.until = bool(enabled), message or "", until if enabled else None
    row.updated_by = actor if getattr(actor, "pk", None) else None
    row.save()
    state = selectors.maintenance_state()
    data = maintenance_payload(state)
    if enabled and disconnect_seconds is not None:
        data["disconnect_seconds"] = disconnect_seconds
    _broadcast("system.maintenance", data, severity="warning" if enabled else "info")
    audit_record(
        organization=None,
        actor=actor,
        action="system.maintenance",
        instance=row,
        before=before,
        after={"enabled": row.enabled, "message": row.message, "until": _json_safe(row.until)},
    )
    return state
