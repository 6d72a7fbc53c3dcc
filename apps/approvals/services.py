"""Writes of the approvals app.

``approval_request`` asks a person (any source: a crew task, a tool call, a workflow step);
``approval_resolve`` records the answer; ``approval_expire`` applies the default once the deadline
passes. What an answer does to the run is up to the source's resolution handler (registered with
``register_resolution_handler``), called in the same transaction as the answer:

- ``crew_task`` / ``tool_call`` (built in): approve → the parked execution goes back to PENDING
  with the decision folded into its checkpoint and is queued (a new Celery task resumes it; no
  completed task runs again); reject → the execution ends FAILED.
- ``workflow_step``: the workflows app registers its own handler (approve → the step completes
  with the approved or edited value as its output and the DAG goes on; reject → the step fails and
  the workflow's error strategy applies). Its events go on the workflow run's stream.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import timedelta
from functools import partial

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.utils import timezone
from rest_framework import exceptions

from apps.accounts.models import Membership
from apps.approvals.models import Approval, ApprovalSource, ApprovalStatus, DefaultAction
from apps.approvals.tasks import expire_approval
from apps.audit.services import audit_record, snapshot
from apps.events.services import publish
from apps.runs.models import Execution, ExecutionStatus
from apps.runs.services import execution_enqueue, execution_transition
from kai_platform.api.errors import Conflict
from kai_platform.tenancy.roles import ADMIN_ROLES, ROLE_RANK, Role

logger = logging.getLogger(__name__)

#: who may answer when the request names no role or user: any human member
DEFAULT_ASSIGNEE_ROLE = Role.USER
EXECUTION_SOURCES = frozenset({ApprovalSource.CREW_TASK, ApprovalSource.TOOL_CALL})
_UNSET = object()

ResolutionHandler = Callable[[Approval], None]
_HANDLERS: dict[str, ResolutionHandler] = {}


def register_resolution_handler(source: str, handler: ResolutionHandler | None = None):
    """``handler(approval)`` runs inside the transaction that resolves an approval of ``source``
    (``approval.status`` is then approved or rejected; ``edited_value``/``feedback``/``timed_out``
    say how). Usable as a decorator. Raising rolls the answer back."""

    def register(fn: ResolutionHandler) -> ResolutionHandler:
        _HANDLERS[str(source)] = fn
        return fn

    return register(handler) if handler is not None else register


# --- who may answer ----------------------------------------------------------------------------


def may_answer(*, approval: Approval, user, role: str | None) -> bool:
    """An assigned user (or an owner/admin); otherwise any member whose role ranks at least the
    approval's ``assignee_role``. The machine identity (``agent``) never answers."""
    if not role or role == Role.AGENT or user is None:
        return False
    if approval.assignee_user_id:
        return user.pk == approval.assignee_user_id or role in ADMIN_ROLES
    return ROLE_RANK[Role(role)] >= ROLE_RANK[Role(approval.assignee_role or DEFAULT_ASSIGNEE_ROLE)]


def _check_role(value: str) -> str:
    if not value:
        return ""
    if value not in Role.values or value == Role.AGENT:
        raise ValueError(
            f"assignee_role must be one of {', '.join(r for r in Role.values if r != Role.AGENT)}, not {value!r}"
        )
    return value


def _find_user(organization, value):
    """A member of ``organization`` by instance, id or email (None when not given)."""
    if value in (None, ""):
        return None

    memberships = Membership.objects.filter(organization=organization).select_related("user")
    if getattr(value, "pk", None):
        memberships = memberships.filter(user_id=value.pk)
    elif "@" in str(value):
        memberships = memberships.filter(user__email__iexact=str(value))
    else:
        memberships = memberships.filter(user_id=str(value))
    try:
        membership = memberships.first()
    except (ValueError, DjangoValidationError):  # a malformed id
        membership = None
    if membership is None:
        raise ValueError(f"assignee {value!r} is not a member of this organization")
    return membership.user


def approval_assignee(*, organization, value):
    """The member ``value`` (a user, an id or an email) names; ``ValueError`` when it names no
    member of ``organization`` (None when not given). For sources that check an assignee ahead."""
    return _find_user(getattr(organization, "pk", organization), value)


def _event_data(approval: Approval, **extra) -> dict:
    return {
        "approval_id": str(approval.pk),
        "source": approval.source,
        "status": approval.status,
        "execution_id": str(approval.execution_id) if approval.execution_id else None,
        "workflow_run_id": str(approval.workflow_run_id) if approval.workflow_run_id else None,
        "step_id": approval.step_id,
        "question": approval.question,
        "proposed": approval.proposed,
        "assignee_role": approval.assignee_role or None,
        "assignee_user_id": str(approval.assignee_user_id) if approval.assignee_user_id else None,
        "deadline": approval.deadline.isoformat() if approval.deadline else None,
        "default_action": approval.default_action,
        **extra,
    }


# --- asking ------------------------------------------------------------------------------------


def approval_request(
    *,
    organization,
    question: str,
    source: str = ApprovalSource.WORKFLOW_STEP,
    proposed=None,
    execution=None,
    workflow_run=None,
    step_id: str = "",
    assignee_role: str = "",
    assignee_user=None,
    deadline=None,
    timeout_seconds=None,
    default_action: str = DefaultAction.REJECT,
    actor=None,
) -> Approval:
    """Ask a person. ``proposed`` is what they approve (an output, a tool call — any JSON);
    ``assignee_role`` the lowest role that may answer, or ``assignee_user`` the one member who
    may (owners/admins always can); ``deadline`` (or ``timeout_seconds`` from now) after which
    ``default_action`` (approve|reject) applies. Publishes ``approval.requested`` on the hub and
    the run's stream. ``ValueError`` on a bad role/user/default."""
    org_id = getattr(organization, "pk", organization)
    assignee_role, user, deadline, proposed = _request_terms(
        org_id,
        source=source,
        default_action=default_action,
        assignee_role=assignee_role,
        assignee_user=assignee_user,
        deadline=deadline,
        timeout_seconds=timeout_seconds,
        proposed=proposed,
    )
    with transaction.atomic():
        approval = Approval.objects.create(
            organization_id=org_id,
            created_by=actor if getattr(actor, "is_authenticated", False) else None,
            source=source,
            execution=execution,
            workflow_run_id=getattr(workflow_run, "pk", workflow_run),
            step_id=str(step_id or "")[:200],
            question=question,
            proposed=proposed,
            assignee_role=assignee_role,
            assignee_user=user,
            deadline=deadline,
            default_action=default_action,
        )
        _announce_request(approval, actor=actor)
        if deadline is not None:
            transaction.on_commit(partial(_schedule_expiry, approval.pk, deadline), robust=True)
    return approval


def _announce_request(approval: Approval, *, actor) -> None:
    """The audit row and the ``approval.requested`` event of a new approval."""
    audit_record(
        organization=approval.organization,
        actor=actor,
        action="approval.request",
        instance=approval,
        after=snapshot(
            approval,
            ["id", "source", "execution", "step_id", "assignee_role", "assignee_user", "deadline", "default_action"],
        ),
    )
    execution = approval.execution
    publish(
        approval.organization_id,
        "approval.requested",
        _event_data(approval),
        execution=_stream_of(approval.source, execution),
        agent=getattr(execution, "agent_id", None),
        actor=actor,
        component="approvals",
        severity="warning",
    )


def _request_terms(
    org_id, *, source, default_action, assignee_role, assignee_user, deadline, timeout_seconds, proposed
) -> tuple:
    """An approval request's checked terms: (assignee role, assignee user, deadline, proposed as a
    JSON object). ``ValueError`` on a bad source, role, user or default."""
    ApprovalSource(source)
    if default_action not in DefaultAction.values:
        raise ValueError(f"default_action must be approve or reject, not {default_action!r}")
    assignee_role = _check_role(assignee_role or "")
    user = _find_user(org_id, assignee_user)
    if deadline is None and timeout_seconds:
        deadline = timezone.now() + timedelta(seconds=float(timeout_seconds))
    if not isinstance(proposed, dict):
        proposed = {"value": proposed} if proposed is not None else {}
    return assignee_role, user, deadline, proposed


def _stream_of(source, execution):
    """The run whose stream carries an approval's events: a workflow step's are its workflow run's
    (the run a person follows); any other source's, its own execution's."""
    if source == ApprovalSource.WORKFLOW_STEP and getattr(execution, "parent_id", None):
        return execution.parent_id
    return execution


def _schedule_expiry(approval_id, deadline) -> None:
    """An eta'd task applies the default at the deadline; the beat sweep catches any it misses."""
    expire_approval.apply_async(args=[str(approval_id)], eta=deadline)


def approval_request_for_execution(*, execution, request: dict, checkpoint: dict) -> bool:
    """Park a RUNNING execution WAITING_FOR_APPROVAL with its checkpoint, and ask (one transaction).
    False when the run may not park (its cancel was requested, or it was ended elsewhere)."""
    question = request.get("question") or "Approval required"
    with transaction.atomic():
        parked = execution_transition(
            execution_id=execution.pk,
            to=ExecutionStatus.WAITING_FOR_APPROVAL,
            reason=f"waiting for approval: {question}"[:4000],
            only_from={ExecutionStatus.RUNNING},
            unless_cancel_requested=True,
            checkpoint=checkpoint,
            heartbeat_at=None,
        )
        if not parked:
            return False
        approval_request(
            organization=execution.organization,
            execution=execution,
            actor=None,
            **{"question": question, **{k: v for k, v in request.items() if k != "question"}},
        )
    return True


# --- answering ---------------------------------------------------------------------------------


def approval_resolve(
    *,
    approval: Approval,
    actor,
    role: str | None,
    approve: bool,
    value=_UNSET,
    feedback: str = "",
    operator: bool = False,
) -> Approval:
    """Approve (optionally with an edited value) or reject (optionally with feedback). 403 for a
    member who may not answer, 409 once answered. The source's handler runs in the same transaction.
    ``operator``: platform staff answering from the console (no membership role)."""
    if not operator and not may_answer(approval=approval, user=actor, role=role):
        who = (
            f"the assigned member{' or an owner/admin' if approval.assignee_user_id else ''}"
            if approval.assignee_user_id
            else f"role {approval.assignee_role or DEFAULT_ASSIGNEE_ROLE} or higher"
        )
        raise exceptions.PermissionDenied(f"Role '{role}' may not answer this approval; it needs {who}.")
    answered = _resolve(approval_id=approval.pk, actor=actor, approve=approve, value=value, feedback=feedback)
    if answered is None:  # only an only_if_due call returns None; this one answers or raises
        raise AssertionError("_resolve returned no approval")
    return answered


def _resolve(
    *,
    approval_id,
    actor,
    approve: bool,
    value=_UNSET,
    feedback: str = "",
    timed_out: bool = False,
    only_if_due: bool = False,
) -> Approval | None:
    now = timezone.now()
    execution_id, stream_id = (
        Approval.objects.filter(pk=approval_id).values_list("execution_id", "execution__parent_id", "source").first()
        or (None, None, None)
    )[:2]
    with transaction.atomic():
        if execution_id:
            # the run's row first, as cancel and the transition service lock it: one lock order, no deadlock
            list(Execution.objects.select_for_update().filter(pk=execution_id).values_list("pk"))
        approval = Approval.objects.select_for_update(of=("self",)).select_related("organization").get(pk=approval_id)
        if not approval.is_pending:
            if only_if_due:
                return None
            raise Conflict(
                f"The approval was already answered ({approval.status}).",
                errors=[{"field": "status", "message": f"is {approval.status}"}],
            )
        if only_if_due and (approval.deadline is None or approval.deadline > now):
            return None
        _record_answer(
            approval,
            actor=actor,
            approve=approve,
            value=value,
            feedback=feedback,
            timed_out=timed_out,
            now=now,
            stream_id=stream_id,
        )
        handler = _HANDLERS.get(approval.source)
        if handler is None:
            logger.warning(
                "no resolution handler for approvals of source %r (approval %s)", approval.source, approval.pk
            )
        else:
            handler(approval)
    return approval


def _record_answer(
    approval: Approval, *, actor, approve: bool, value, feedback: str, timed_out: bool, now, stream_id
) -> None:
    """Save the answer on the locked pending approval, audit it and publish ``approval.resolved``."""
    before = snapshot(approval, ["status", "edited_value", "feedback", "resolved_by"])
    approval.status = ApprovalStatus.APPROVED if approve else ApprovalStatus.REJECTED
    if value is not _UNSET:
        approval.edited_value = value
    approval.feedback = feedback or ""
    approval.resolved_by = actor if getattr(actor, "is_authenticated", False) else None
    approval.resolved_at = now
    approval.timed_out = timed_out
    approval.save(
        update_fields=["status", "edited_value", "feedback", "resolved_by", "resolved_at", "timed_out", "updated_at"]
    )
    audit_record(
        organization=approval.organization,
        actor=actor if approval.resolved_by else None,
        action="approval.timeout" if timed_out else f"approval.{'approve' if approve else 'reject'}",
        instance=approval,
        before=before,
        after=snapshot(approval, ["status", "edited_value", "feedback", "resolved_by"]),
    )
    publish(
        approval.organization_id,
        "approval.resolved",
        _event_data(
            approval,
            edited_value=approval.edited_value,
            feedback=approval.feedback,
            timed_out=timed_out,
            resolved_by=str(approval.resolved_by_id) if approval.resolved_by_id else None,
        ),
        execution=stream_id if approval.source == ApprovalSource.WORKFLOW_STEP and stream_id else approval.execution_id,
        actor=approval.resolved_by,
        component="approvals",
    )


def approval_expire(*, approval_id) -> Approval | None:
    """Apply the default of a pending approval whose deadline passed (no-op otherwise)."""
    approval = Approval.objects.filter(pk=approval_id).only("default_action").first()
    if approval is None:
        return None
    return _resolve(
        approval_id=approval_id,
        actor=None,
        approve=approval.default_action == DefaultAction.APPROVE,
        feedback="the deadline passed without an answer",
        timed_out=True,
        only_if_due=True,
    )


def approvals_expire_due(*, limit: int = 200) -> int:
    """The beat sweep: every pending approval past its deadline gets its default."""
    due = list(
        Approval.objects.filter(status=ApprovalStatus.PENDING, deadline__lte=timezone.now())
        .order_by("deadline")
        .values_list("pk", flat=True)[:limit]
    )
    return sum(1 for pk in due if approval_expire(approval_id=pk) is not None)


def approvals_cancel_for_execution(*, execution_id) -> int:
    """A run that ended while parked leaves no approval pending."""
    return Approval.objects.filter(execution_id=execution_id, status=ApprovalStatus.PENDING).update(
        status=ApprovalStatus.CANCELLED,
        resolved_at=timezone.now(),
        updated_at=timezone.now(),
        feedback="the run ended before an answer",
    )


#: the events ``on_event_published`` acts on (declared to the publisher: others never call it)
RUN_END_EVENTS = ("execution.cancelled", "execution.failed")


def on_event_published(event) -> None:
    """Publish listener: when a run ends (cancelled, failed) its pending approvals are cancelled."""
    if event.execution_id and event.type in RUN_END_EVENTS:
        with transaction.atomic():
            approvals_cancel_for_execution(execution_id=event.execution_id)


# --- what an answer does to a parked execution -------------------------------------------------


def _value_text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _resume_or_fail_execution(approval: Approval) -> None:
    if approval.execution_id is None:
        return
    execution = (
        Execution.objects.filter(pk=approval.execution_id).only("pk", "checkpoint", "priority", "max_attempts").first()
    )
    if execution is None:
        return
    waiting = {ExecutionStatus.WAITING_FOR_APPROVAL}
    who = (
        "the deadline's default"
        if approval.timed_out
        else (approval.resolved_by.email if approval.resolved_by else "a reviewer")
    )
    if approval.status == ApprovalStatus.REJECTED:
        reason = f"approval of {approval.step_id or approval.source} rejected by {who}"
        if approval.feedback:
            reason += f": {approval.feedback}"
        execution_transition(
            execution_id=execution.pk, to=ExecutionStatus.FAILED, reason=reason, error=reason, only_from=waiting
        )
        return
    checkpoint = dict(execution.checkpoint or {})
    edited = approval.edited_value is not None
    if approval.source == ApprovalSource.CREW_TASK:
        output = _value_text(approval.edited_value) if edited else approval.proposed.get("output", "")
        checkpoint["outputs"] = {**(checkpoint.get("outputs") or {}), approval.step_id: output}
        checkpoint.pop("pending_task", None)
    else:  # a tool call: the paused agent step calls it (with the edited arguments) and goes on
        arguments = approval.edited_value if edited else None
        if isinstance(arguments, dict) and isinstance(arguments.get("arguments"), dict):
            arguments = arguments["arguments"]
        step = dict(checkpoint.get("step") or {})
        step["decision"] = {
            "call_id": approval.proposed.get("call_id"),
            "arguments": arguments if isinstance(arguments, dict) else None,
        }
        checkpoint["step"] = step
    if execution_transition(
        execution_id=execution.pk,
        to=ExecutionStatus.PENDING,
        only_from=waiting,
        reason=f"approved by {who}; resuming",
        checkpoint=checkpoint,
        worker="",
        # the resume's claim is one more attempt: it keeps the run's retry budget
        max_attempts=execution.max_attempts + 1,
    ):
        transaction.on_commit(partial(execution_enqueue, execution_id=execution.pk, priority=execution.priority))


for _source in EXECUTION_SOURCES:
    register_resolution_handler(_source, _resume_or_fail_execution)
