"""The operator console's admin: constant query counts on changelists (5 rows vs 50), and the
actions, each going through its app's service (audit row included)."""

from __future__ import annotations

import itertools
import uuid
from datetime import timedelta

import pytest
from django.contrib import admin
from django.db import connection, models
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.audit.models import AuditEvent
from tests.console.conftest import fast_user
from tests.factories import MembershipFactory, OrganizationFactory, make_tenant_object

pytestmark = pytest.mark.django_db
_OFFSETS = itertools.count(1000)

#: every app's admin is held to a constant query count; only Django's and third-party admins are left out
NOT_CHECKED = {"auth", "django_celery_beat", "token_blacklist"}
MODELS = sorted((m for m in admin.site._registry if m._meta.app_label not in NOT_CHECKED), key=lambda m: m._meta.label)


@pytest.fixture
def staff_client(client):
    client.force_login(fast_user(is_staff=True, is_superuser=True))
    return client


def _seed(model, member):
    """One saved row of ``model`` (the template the clones copy)."""
    from apps.accounts.models import MagicLink, Membership, Organization, User

    org, user = member.organization, member.user
    if model is Organization:
        return OrganizationFactory()
    if model is User:
        return fast_user()
    if model is Membership:
        return MembershipFactory(organization=org, user=fast_user())
    if model is MagicLink:
        return MagicLink.objects.create(user=user, token_hash=uuid.uuid4().hex, expires_at=_now())
    from apps.audit.models import AuditEvent
    from apps.events.models import Event
    from apps.runs.models import Execution, ExecutionEvent, ExecutionLog, TraceSpan

    if model is Event:
        return Event.objects.create(organization=org, type="x.happened", actor=user)
    if model is AuditEvent:
        return AuditEvent.objects.create(organization=org, actor=user, action="x.update", model="x.Model")
    if model in (ExecutionEvent, ExecutionLog, TraceSpan):
        execution = Execution.objects.create(organization=org, kind="crew", run_name="r")
        if model is ExecutionEvent:
            return ExecutionEvent.objects.create(organization=org, execution=execution, to_status="PENDING", at=_now())
        if model is ExecutionLog:
            return ExecutionLog.objects.create(
                organization=org, execution=execution, seq=1, message="m", created_at=_now()
            )
        return TraceSpan.objects.create(
            organization=org,
            execution=execution,
            trace_id="t",
            span_id="s1",
            kind="llm",
            name="call",
            started_at=_now(),
        )
    if model is Execution:
        from apps.agents.services import agent_create

        agent = agent_create(organization=org, actor=user, data={"name": "Runner", "role": "r", "goal": "g"})
        return Execution.objects.create(organization=org, kind="agent_task", run_name="r", agent=agent, created_by=user)
    from tests.factories import is_tenant_model

    if not is_tenant_model(model) and model.objects.exists():
        return model.objects.first()  # platform rows a migration seeded (plans …)
    return make_tenant_object(model, org, user)  # the generic builder fills any model's required fields


def _now():
    from django.utils import timezone

    return timezone.now()


def _unique_groups(model) -> list[set[str]]:
    groups = [{f.name} for f in model._meta.concrete_fields if f.unique and not f.primary_key]
    groups += [set(c.fields) for c in model._meta.constraints if getattr(c, "fields", None)]
    groups += [set(together) for together in model._meta.unique_together]
    return groups


def _varied(field, value):
    if isinstance(field, (models.CharField, models.TextField)):
        suffix = f"-{uuid.uuid4().hex[:10]}"
        return str(value)[: (field.max_length or 200) - len(suffix)] + suffix
    if isinstance(field, models.IntegerField):
        return value + next(_OFFSETS)
    if isinstance(field, models.DateTimeField):
        return value + timedelta(seconds=next(_OFFSETS))
    if isinstance(field, models.DateField):
        return value + timedelta(days=next(_OFFSETS))
    if isinstance(field, models.UUIDField):
        return uuid.uuid4()
    return value


def _clone(obj, count: int) -> list:
    """``count`` copies of ``obj`` in one INSERT: same related rows, unique values varied; where a
    unique set holds only relations (``(organization, user)``, a one-to-one), each copy gets a copy
    of the related row."""
    model = type(obj)
    fields = {f.name: f for f in model._meta.concrete_fields if not f.primary_key}
    vary, fresh = set(), set()
    for group in _unique_groups(model):
        plain = {name for name in group if not fields[name].is_relation}
        if plain:
            vary |= plain
        else:
            relations = sorted(group, key=lambda name: fields[name].related_model._meta.label != "accounts.User")
            fresh.add(relations[0])
    copies = {}
    for name in fresh:
        related = getattr(obj, name)
        copies[name] = _clone(related, count) if related is not None else [None] * count
    rows = []
    for i in range(count):
        values = {f.attname: getattr(obj, f.attname) for f in fields.values()}
        for name in fresh:
            values[fields[name].attname] = copies[name][i].pk if copies[name][i] is not None else None
        for name in vary:
            if values[fields[name].attname] is not None:
                values[fields[name].attname] = _varied(fields[name], values[fields[name].attname])
        rows.append(model(**values))
    return model.objects.bulk_create(rows)


def _changelist_queries(client, model) -> tuple[int, int]:
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, (model._meta.label, response.status_code)
    return len(queries), response.context["cl"].result_count


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m._meta.label)
def test_changelist_query_count_does_not_grow_with_rows(staff_client, member, model):
    seed = _seed(model, member)
    _clone(seed, 4)
    few, shown_few = _changelist_queries(staff_client, model)
    _clone(seed, 45)
    many, shown_many = _changelist_queries(staff_client, model)
    assert shown_many - shown_few == 45
    assert many == few, f"{model._meta.label}: {few} queries for {shown_few} rows, {many} for {shown_many}"


def test_execution_change_page_shows_status_history_and_spans(staff_client, member):
    from apps.runs.models import TraceSpan

    span = _seed(TraceSpan, member)
    response = staff_client.get(reverse("admin:runs_execution_change", args=[span.execution_id]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "call" in html and "all log lines" in html and "Trace spans" in html


# --- actions --------------------------------------------------------------------------------


def _act(client, model, action, objects):
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    response = client.post(url, {"action": action, "_selected_action": [str(o.pk) for o in objects]})
    assert response.status_code == 302, response.content[:500]
    return response


def _audited(action, instance) -> bool:
    return AuditEvent.objects.filter(action=action, object_id=str(instance.pk)).exists()


def test_cancel_and_retry_executions(staff_client, member):
    from apps.runs.models import Execution, ExecutionStatus
    from apps.runs.services import execution_create

    pending = execution_create(
        organization=member.organization,
        actor=member.user,
        kind="agent_task",
        run_name="to cancel",
        definition={"task": {"description": "d"}},
        enqueue=False,
    )
    _act(staff_client, Execution, "cancel", [pending])
    pending.refresh_from_db()
    assert pending.cancel_requested and pending.status == ExecutionStatus.CANCELLED
    assert _audited("execution.cancel", pending)

    _act(staff_client, Execution, "retry", [pending])
    retry = Execution.objects.get(run_name="to cancel (retry)")
    assert retry.status == ExecutionStatus.PENDING and retry.definition == pending.definition
    assert retry.organization_id == member.organization.pk and _audited("execution.create", retry)
    _act(staff_client, Execution, "retry", [retry])  # not ended: nothing to retry
    assert Execution.objects.filter(run_name__startswith="to cancel").count() == 2


def test_restart_agent_and_enable_disable_tools(staff_client, member):
    from apps.agents.models import Agent, Tool

    agent = make_tenant_object(Agent, member.organization, member.user)
    Agent.objects.filter(pk=agent.pk).update(status="error", last_error="boom")
    _act(staff_client, Agent, "restart", [agent])
    agent.refresh_from_db()
    assert agent.status == "idle" and agent.last_error == "" and _audited("agent.restart", agent)

    tool = make_tenant_object(Tool, member.organization, member.user)
    assert tool.enabled
    _act(staff_client, Tool, "disable", [tool])
    _act(staff_client, Tool, "disable", [tool])  # idempotent: already disabled
    tool.refresh_from_db()
    assert tool.enabled is False
    _act(staff_client, Tool, "enable", [tool])
    tool.refresh_from_db()
    assert tool.enabled is True and AuditEvent.objects.filter(action="tool.update", object_id=str(tool.pk)).count() == 2


def test_schedules_enable_disable_and_run_now(staff_client, member):
    from apps.runs.models import Execution
    from apps.scheduler.models import Schedule

    schedule = make_tenant_object(Schedule, member.organization, member.user)
    _act(staff_client, Schedule, "disable", [schedule])
    schedule.refresh_from_db()
    assert schedule.enabled is False and not schedule.periodic_task.enabled
    _act(staff_client, Schedule, "enable", [schedule])
    schedule.refresh_from_db()
    assert schedule.enabled is True and schedule.periodic_task.enabled
    _act(staff_client, Schedule, "run_now", [schedule])
    schedule.refresh_from_db()
    assert schedule.last_execution_id and Execution.objects.filter(pk=schedule.last_execution_id).exists()
    assert _audited("schedule.run_now", schedule)


def test_revoke_api_keys_and_deployments(staff_client, member):
    from apps.accounts.models import ApiKey
    from apps.accounts.services import api_key_create
    from apps.agents.models import Deployment

    api_key, _ = api_key_create(
        organization=member.organization, created_by=member.user, creator_role="owner", name="k"
    )
    _act(staff_client, ApiKey, "revoke", [api_key])
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None and _audited("api_key.revoke", api_key)
    listing = staff_client.get(reverse("admin:accounts_apikey_changelist"), {"status": "revoked"})
    assert listing.context["cl"].result_count == 1

    deployment = make_tenant_object(Deployment, member.organization, member.user)
    _act(staff_client, Deployment, "stop", [deployment])
    deployment.refresh_from_db()
    assert deployment.status == "stopped" and deployment.stopped_at is not None


def test_rotate_credentials_under_the_newest_key(staff_client, member, settings):
    from cryptography.fernet import Fernet

    from apps.agents import crypto
    from apps.agents.models import Credential
    from apps.agents.services import credential_secret

    credential = make_tenant_object(Credential, member.organization, member.user)
    secret = credential_secret(credential=credential)
    old = crypto._keys()[0]
    new = Fernet.generate_key().decode()
    settings.KAI_SECRET_KEYS = [new, old]
    crypto.reset_keys_cache()
    try:
        _act(staff_client, Credential, "rotate", [credential])
        credential.refresh_from_db()
        assert credential.encryption_key_id == crypto.key_id(new)
        settings.KAI_SECRET_KEYS = [new]
        crypto.reset_keys_cache()
        assert credential_secret(credential=credential) == secret
        assert _audited("credential.rotate", credential)
    finally:
        settings.KAI_SECRET_KEYS = []
        crypto.reset_keys_cache()


def test_event_and_audit_views_are_read_only(staff_client, member):
    from apps.events.models import Event

    event = _seed(Event, member)
    audit = _seed(AuditEvent, member)
    for model, obj in ((Event, event), (AuditEvent, audit)):
        change = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[obj.pk])
        assert staff_client.get(change).status_code == 200
        assert staff_client.post(change, {}).status_code == 403
        add = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_add")
        assert staff_client.get(add).status_code == 403
