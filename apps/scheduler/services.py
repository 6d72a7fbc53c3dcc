"""Writes of the scheduler: schedules, their beat entries, and the runs they fire.

Every write keeps the schedule's ``PeriodicTask`` in step in the same transaction: a
``CrontabSchedule`` in the schedule's time zone, task ``scheduler.fire`` with the schedule id as
its only argument, ``enabled`` mirrored. Beat only says "look now"; ``schedule_fire`` decides
which tick that is and creates its run keyed ``schedule:<id>:<tick UTC>``, so a second beat, a
redelivered message or a concurrent fire never runs a tick twice (the Execution table's unique
``dedupe_key`` is the guard).
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask
from rest_framework import exceptions

from apps.agents.models import Agent
from apps.audit.services import audit_covered, audit_record, snapshot
from apps.crews.models import Crew
from apps.crews.services import missing_inputs_message
from apps.crews.specs import parse_crew
from apps.events.services import publish
from apps.quotas.errors import QuotaExceeded
from apps.quotas.services import quota_refusal_record
from apps.runs.models import Execution, ExecutionKind
from apps.runs.services import execution_create
from apps.scheduler import cron
from apps.scheduler.models import MisfirePolicy, Schedule, TargetType
from apps.workflows.models import Workflow
from apps.workflows.services import workflow_start

logger = logging.getLogger(__name__)

FIRE_TASK = "scheduler.fire"
SCHEDULE_FIELDS = (
    "name",
    "description",
    "cron_expression",
    "timezone",
    "target_type",
    "crew",
    "agent",
    "workflow",
    "inputs",
    "task",
    "enabled",
    "misfire_policy",
)


def misfire_grace() -> timedelta:
    """A tick fired later than this after its time counts as missed (beat was down)."""
    return timedelta(seconds=getattr(settings, "KAI_SCHEDULER_MISFIRE_GRACE_SECONDS", 120))


def _actor_or_none(actor):
    return actor if getattr(actor, "pk", None) and getattr(actor, "is_authenticated", False) else None


def periodic_task_name(schedule: Schedule) -> str:
    return f"kai-schedule:{schedule.pk}"


# --- validation --------------------------------------------------------------------------------


def _timing_errors(values: dict, current: Schedule | None) -> dict[str, list[str]]:
    """The cron expression's and time zone's problems (the expression normalised when it is valid)."""
    errors: dict[str, list[str]] = {}
    expression = values.get("cron_expression", current.cron_expression if current else None)
    if "cron_expression" in values or current is None:
        problem = cron.cron_error(expression)
        if problem:
            errors["cron_expression"] = [problem]
        elif isinstance(expression, str):  # always so once cron_error found no problem
            values["cron_expression"] = " ".join(expression.split())
    if "timezone" in values and (problem := cron.timezone_error(values["timezone"])):
        errors["timezone"] = [problem]
    return errors


def _resolve_target(*, organization, values: dict, current: Schedule | None) -> dict:
    """Check cron, time zone and target of the merged values; 400 naming the field."""
    errors = _timing_errors(values, current)
    # Target: explicit target_type, else inferred from the id given.
    if "target_type" not in values and current is None:
        values["target_type"] = (
            TargetType.WORKFLOW
            if values.get("workflow") and not values.get("crew")
            else TargetType.AGENT_TASK
            if values.get("agent") and not values.get("crew")
            else TargetType.CREW
        )
    target_type = values.get("target_type", current.target_type if current else TargetType.CREW)
    for field, model in (("crew", Crew), ("agent", Agent), ("workflow", Workflow)):
        if values.get(field) is not None:
            pk = values[field].pk if isinstance(values[field], model) else values[field]
            obj = model.objects.for_org(organization).filter(pk=pk).first()
            if obj is None:
                errors[f"{field}_id"] = [f"No {field} {values[field]} in this organization."]
            else:
                values[field] = obj
    if not errors:
        crew = values.get("crew", current.crew if current else None)
        agent = values.get("agent", current.agent if current else None)
        workflow = values.get("workflow", current.workflow if current else None)
        task = values.get("task", current.task if current else {}) or {}
        if target_type != TargetType.WORKFLOW:
            values["workflow"] = None
        if target_type == TargetType.WORKFLOW:
            if workflow is None:
                errors["workflow_id"] = ["A workflow schedule needs workflow_id."]
            values["crew"] = None
            values["agent"] = None
        elif target_type == TargetType.CREW:
            if crew is None:
                errors["crew_id"] = ["A crew schedule needs crew_id."]
            elif missing := _crew_missing_inputs(crew, values.get("inputs", current.inputs if current else {})):
                errors["inputs"] = [missing]
            values["agent"] = None
        elif target_type == TargetType.AGENT_TASK:
            if agent is None:
                errors["agent_id"] = ["An agent_task schedule needs agent_id."]
            if not isinstance(task, dict) or not str(task.get("description") or "").strip():
                errors["task"] = ["An agent_task schedule needs task.description (and may give task.expected_output)."]
            values["crew"] = None
    if errors:
        raise exceptions.ValidationError(errors)
    return values


def _crew_missing_inputs(crew, inputs) -> str:
    """What a crew run started with ``inputs`` would be refused for (every unfilled placeholder), or ''."""
    spec = parse_crew(crew.agents_yaml, crew.tasks_yaml, crew.process, crew.config or {})
    missing = spec.missing_inputs(inputs if isinstance(inputs, dict) else {})
    return missing_inputs_message(missing) if missing else ""


# --- the beat entry ----------------------------------------------------------------------------


def _sync_periodic_task(schedule: Schedule) -> None:
    """Create or update the schedule's PeriodicTask (call inside the write's transaction)."""
    crontab, _ = CrontabSchedule.objects.get_or_create(
        timezone=schedule.timezone, **cron.crontab_fields(schedule.cron_expression)
    )
    periodic = schedule.periodic_task or PeriodicTask(name=periodic_task_name(schedule))
    periodic.name = periodic_task_name(schedule)
    periodic.task = FIRE_TASK
    periodic.crontab = crontab
    periodic.interval = None
    periodic.solar = None
    periodic.clocked = None
    periodic.args = json.dumps([str(schedule.pk)])
    periodic.kwargs = "{}"
    periodic.queue = settings.CELERY_TASK_DEFAULT_QUEUE
    periodic.routing_key = settings.CELERY_TASK_DEFAULT_QUEUE
    periodic.enabled = schedule.enabled
    periodic.one_off = False
    periodic.description = f"kAI schedule {schedule.name} ({schedule.organization_id})"[:1000]
    periodic.save()
    if schedule.periodic_task_id != periodic.pk:
        schedule.periodic_task = periodic
        Schedule.objects.filter(pk=schedule.pk).update(periodic_task=periodic)


def _event_data(schedule: Schedule, **extra) -> dict:
    return {
        "schedule_id": str(schedule.pk),
        "name": schedule.name,
        "enabled": schedule.enabled,
        "cron_expression": schedule.cron_expression,
        "timezone": schedule.timezone,
        **extra,
    }


# --- CRUD --------------------------------------------------------------------------------------


def schedule_create(*, organization, actor, data: dict) -> Schedule:
    values = _resolve_target(
        organization=organization, values={k: data[k] for k in SCHEDULE_FIELDS if k in data}, current=None
    )
    with transaction.atomic():
        schedule = Schedule.objects.create(
            organization_id=getattr(organization, "pk", organization), created_by=_actor_or_none(actor), **values
        )
        _sync_periodic_task(schedule)
        audit_record(
            organization=organization,
            actor=actor,
            action="schedule.create",
            instance=schedule,
            after=snapshot(schedule),
        )
        publish(organization, "schedule.created", _event_data(schedule), actor=actor, component="scheduler")
    return schedule


def schedule_update(*, schedule: Schedule, actor, data: dict) -> Schedule:
    values = {k: data[k] for k in SCHEDULE_FIELDS if k in data}
    with transaction.atomic():
        schedule = Schedule.objects.select_for_update(of=("self",)).select_related("periodic_task").get(pk=schedule.pk)
        values = _resolve_target(organization=schedule.organization_id, values=values, current=schedule)
        before = snapshot(schedule)
        for key, value in values.items():
            setattr(schedule, key, value)
        schedule.save()
        _sync_periodic_task(schedule)
        audit_record(
            organization=schedule.organization,
            actor=actor,
            action="schedule.update",
            instance=schedule,
            before=before,
            after=snapshot(schedule),
        )
        publish(
            schedule.organization_id,
            "schedule.updated",
            _event_data(schedule, changed_fields=sorted(values)),
            actor=actor,
            component="scheduler",
        )
    return schedule


def schedule_toggle(*, schedule: Schedule, actor, enabled: bool | None = None) -> Schedule:
    """Flip ``enabled`` (or set it); the PeriodicTask follows in the same transaction."""
    with transaction.atomic():
        schedule = Schedule.objects.select_for_update(of=("self",)).select_related("periodic_task").get(pk=schedule.pk)
        before = snapshot(schedule, ["enabled"])
        schedule.enabled = (not schedule.enabled) if enabled is None else bool(enabled)
        schedule.save(update_fields=["enabled", "updated_at"])
        _sync_periodic_task(schedule)
        audit_record(
            organization=schedule.organization,
            actor=actor,
            action="schedule.toggle",
            instance=schedule,
            before=before,
            after=snapshot(schedule, ["enabled"]),
        )
        publish(schedule.organization_id, "schedule.toggled", _event_data(schedule), actor=actor, component="scheduler")
    return schedule


def schedule_delete(*, schedule: Schedule, actor) -> None:
    with transaction.atomic():
        audit_record(
            organization=schedule.organization,
            actor=actor,
            action="schedule.delete",
            instance=schedule,
            before=snapshot(schedule),
        )
        publish(
            schedule.organization_id,
            "schedule.deleted",
            {"schedule_id": str(schedule.pk)},
            actor=actor,
            component="scheduler",
        )
        periodic_id = schedule.periodic_task_id
        schedule.delete()
        PeriodicTask.objects.filter(pk=periodic_id).delete()
        PeriodicTask.objects.filter(name=periodic_task_name(schedule)).delete()


# --- runs --------------------------------------------------------------------------------------


def _start_run(
    schedule: Schedule, *, actor, run_name: str, dedupe_key: str | None, execution_id=None, also_publish=None
) -> Execution | None:
    """The run of a tick (or of run-now). ``execution_id``/``also_publish`` go to ``execution_create``
    (crew and agent-task targets; a workflow run ignores them)."""
    options = {"execution_id": execution_id, "also_publish": also_publish}
    if schedule.target_type == TargetType.WORKFLOW:
        workflow = schedule.workflow
        if workflow is None or not workflow.is_active:
            return None
        run = workflow_start(
            workflow=workflow,
            actor=actor,
            inputs=schedule.inputs,
            trigger_type="schedule",
            trigger_source=f"schedule {schedule.pk}: {run_name}",
            dedupe_key=dedupe_key,
        )
        return run.execution
    if schedule.target_type == TargetType.CREW and schedule.crew is not None:
        crew = schedule.crew
        definition = {
            "name": crew.name,
            "agents_yaml": crew.agents_yaml,
            "tasks_yaml": crew.tasks_yaml,
            "process": crew.process,
            "model": crew.model,
            "config": crew.config or {},
        }
        return execution_create(
            organization=schedule.organization,
            actor=actor,
            kind=ExecutionKind.CREW,
            crew=crew,
            run_name=run_name,
            inputs=schedule.inputs,
            definition=definition,
            model=crew.model,
            dedupe_key=dedupe_key,
            **options,
        )
    if schedule.target_type == TargetType.AGENT_TASK and schedule.agent is not None:
        task = schedule.task or {}
        definition = {
            "name": schedule.name,
            "description": str(task.get("description") or ""),
            "expected_output": str(task.get("expected_output") or ""),
        }
        return execution_create(
            organization=schedule.organization,
            actor=actor,
            kind=ExecutionKind.AGENT_TASK,
            agent=schedule.agent,
            run_name=run_name,
            inputs=schedule.inputs,
            definition=definition,
            dedupe_key=dedupe_key,
            **options,
        )
    return None


def schedule_run_now(*, schedule: Schedule, actor) -> Execution:
    """A run now, outside the cron ticks (not deduplicated)."""
    now = timezone.now()
    with transaction.atomic():
        schedule = (
            Schedule.objects.select_for_update(of=("self",))
            .select_related("organization", "crew", "agent", "workflow")
            .get(pk=schedule.pk)
        )
        with audit_covered():  # the schedule.run_now row below names the run it starts
            execution = _start_run(
                schedule, actor=actor, dedupe_key=None, run_name=f"{schedule.name} (run now {cron.tick_key(now)})"
            )
        if execution is None:
            fields: dict[str, str] = {TargetType.CREW: "crew_id", TargetType.WORKFLOW: "workflow_id"}
            field = fields.get(schedule.target_type, "agent_id")
            raise exceptions.ValidationError({field: ["The schedule's target no longer exists."]})
        schedule.last_run_at = now
        schedule.last_execution = execution
        schedule.save(update_fields=["last_run_at", "last_execution", "updated_at"])
        audit_record(
            organization=schedule.organization,
            actor=actor,
            action="schedule.run_now",
            instance=schedule,
            after={"execution_id": str(execution.pk)},
        )
        publish(
            schedule.organization_id,
            "schedule.fired",
            _event_data(schedule, execution_id=str(execution.pk), trigger="manual", tick=None),
            execution=execution,
            actor=actor,
            component="scheduler",
        )
    return execution


@dataclass
class FireResult:
    outcome: str  # fired | duplicate | disabled | missing | misfire_skipped | no_target | no_tick | quota_refused
    execution_id: str | None = None
    tick: str | None = None


def schedule_fire(*, schedule_id, now: datetime | None = None) -> FireResult:
    """Beat's tick: create the run of the latest tick at or before ``now`` exactly once.

    Misfires (the tick is older than the grace period: beat or the workers were down): with
    ``run_once`` the latest missed tick runs once, standing for all the ticks missed; with ``skip``
    nothing runs and ``schedule.misfired`` is published. A disabled or deleted schedule fires
    nothing (an orphaned PeriodicTask is removed)."""
    now = now or timezone.now()
    with transaction.atomic():
        schedule = (
            Schedule.objects.select_for_update(of=("self",))
            .select_related("organization", "crew", "agent", "workflow")
            .filter(pk=schedule_id)
            .first()
        )
        if schedule is None:
            PeriodicTask.objects.filter(name=f"kai-schedule:{schedule_id}").delete()
            return FireResult("missing")
        if not schedule.enabled:
            return FireResult("disabled")
        # a beat on a clock a little ahead of ours must not land on the previous tick
        tick = cron.latest_tick(schedule.cron_expression, schedule.timezone, now=now + timedelta(seconds=2))
        if tick is None:
            return FireResult("no_tick")
        key = cron.tick_key(tick)
        dedupe_key = f"schedule:{schedule.pk}:{key}"
        existing = Execution.objects.filter(dedupe_key=dedupe_key).only("pk").first()
        if existing is not None:
            return FireResult("duplicate", str(existing.pk), key)
        if schedule.last_tick_at is not None and tick <= schedule.last_tick_at:
            return FireResult("duplicate", str(schedule.last_execution_id or "") or None, key)
        missed = now - tick > misfire_grace()
        if missed and schedule.misfire_policy == MisfirePolicy.SKIP:
            schedule.last_tick_at = tick
            schedule.save(update_fields=["last_tick_at", "updated_at"])
            publish(
                schedule.organization_id,
                "schedule.misfired",
                _event_data(schedule, tick=key, policy=schedule.misfire_policy),
                component="scheduler",
                severity="warning",
            )
            return FireResult("misfire_skipped", None, key)
        # A burst of ticks of one organization (every schedule on the same minute) serializes on its
        # event lock, held from the first event to the commit: so the schedule is written first and
        # both events (execution.pending, schedule.fired) go in one statement at the very end.
        inline = schedule.target_type != TargetType.WORKFLOW
        previous = (schedule.last_run_at, schedule.last_tick_at, schedule.last_execution_id)
        execution_id = uuid.uuid4()
        if inline:  # the run's row follows in this transaction (the foreign key is checked at commit)
            schedule.last_run_at, schedule.last_tick_at, schedule.last_execution_id = now, tick, execution_id
            schedule.save(update_fields=["last_run_at", "last_tick_at", "last_execution", "updated_at"])

        def fired(execution):
            return [
                {
                    "organization": schedule.organization_id,
                    "type": "schedule.fired",
                    "execution": execution,
                    "data": _event_data(
                        schedule, execution_id=str(execution.pk), trigger="cron", tick=key, missed=missed
                    ),
                    "component": "scheduler",
                }
            ]

        try:
            execution = _start_run(
                schedule,
                actor=None,
                dedupe_key=dedupe_key,
                execution_id=execution_id,
                also_publish=fired,
                run_name=f"{schedule.name} @ {tick.isoformat()}",
            )
        except QuotaExceeded as refused:  # the tick is spent, refused: kept in the schedule's history
            schedule.last_run_at, schedule.last_execution_id = previous[0], previous[2]
            schedule.last_tick_at = tick
            schedule.save(update_fields=["last_run_at", "last_tick_at", "last_execution", "updated_at"])
            quota_refusal_record(
                organization=schedule.organization_id,
                error=refused,
                source="schedule",
                source_id=schedule.pk,
                detail={"tick": key, "schedule_name": schedule.name},
            )
            publish(
                schedule.organization_id,
                "schedule.failed",
                _event_data(
                    schedule, tick=key, reason="quota_exceeded", message=str(refused.detail), quota=refused.quota
                ),
                component="scheduler",
                severity="warning",
            )
            return FireResult("quota_refused", None, key)
        if execution is None:
            if inline:
                schedule.last_run_at, schedule.last_tick_at, schedule.last_execution_id = previous
                schedule.save(update_fields=["last_run_at", "last_tick_at", "last_execution", "updated_at"])
            publish(
                schedule.organization_id,
                "schedule.failed",
                _event_data(schedule, tick=key, reason="the schedule's target no longer exists"),
                component="scheduler",
                severity="error",
            )
            return FireResult("no_target", None, key)
        if not inline or execution.pk != execution_id:  # a workflow run; or a run that existed already
            schedule.last_run_at, schedule.last_tick_at, schedule.last_execution = now, tick, execution
            schedule.save(update_fields=["last_run_at", "last_tick_at", "last_execution", "updated_at"])
            publish(
                schedule.organization_id,
                "schedule.fired",
                _event_data(schedule, execution_id=str(execution.pk), trigger="cron", tick=key, missed=missed),
                execution=execution,
                component="scheduler",
            )
    return FireResult("fired", str(execution.pk), key)
