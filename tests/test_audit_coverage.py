"""Audit coverage, discovered from the URL conf (issue 9, DESIGN §10).

Every write route (POST/PUT/PATCH/DELETE) of every app, found at run time like the isolation
sweep finds its routes, is called once with a valid body and must leave exactly one
``AuditEvent`` in the request's organization with the right action kind and diff. No secret —
passwords, platform API keys and JWTs, provider credentials, webhook secrets, anything the
request sent or the response returned under a secret-looking key — may appear in any audit row
written or any log line emitted during the call.

How a route is exercised:
- ``RECIPES[(route name, method)]`` builds the call (body, object to act on, what the diff must
  show). Apps add recipes here as their routes land.
- Without a recipe, standard viewset actions are exercised generically: ``destroy`` deletes a
  factory-made object, ``update``/``partial_update`` change a writable text field of one,
  ``create`` posts a body built from the serializer's required fields.
- ``NOT_AUDITED`` lists the routes that legitimately write no audit row, each with the reason.
A write route in none of these that the generic path cannot exercise fails the test, naming it.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from django.urls import reverse

from apps.audit.models import AuditEvent
from tests.factories import PASSWORD, is_tenant_model, make_tenant_object
from tests.test_tenant_isolation import API_NAMESPACE, Route, api_routes, tenant_model_of

WRITE_METHODS = ("post", "put", "patch", "delete")
SECRET_KEY_RE = re.compile(r"pass(word|phrase)?|secret|token|api_?key|private|credential|signature|^key$|^value$", re.I)


def write_cases() -> list[tuple[Route, str, str]]:
    cases = []
    for route in api_routes():
        for method, action in route.actions:
            if method in WRITE_METHODS:
                cases.append((route, method, action))
    return cases


CASES = write_cases()


def case_id(case) -> str:
    route, method, _ = case
    return f"{route.name}:{method}"


# --- what a call looks like ----------------------------------------------------------------------


@dataclass
class Call:
    url: str
    body: dict | None = None
    format: str = "json"
    #: the audit row's action must end with this (".create", ".update", "system.modify", …)
    action: str | None = None
    #: keys whose new values the row's ``after`` must hold (for updates: the changed fields)
    after: dict = field(default_factory=dict)
    #: ``before`` must be None (create) / ``after`` must be None (delete)
    kind: str = "change"  # create | change | delete
    object_id: str | None = None
    check: Callable | None = None  # extra check(row, response)
    statuses: tuple = (200, 201, 202, 204)
    headers: dict = field(default_factory=dict)  # extra request headers (HTTP_… keys)
    raw: bytes | None = None  # a raw JSON body (signed webhooks), sent instead of ``body``
    actor_id: object = "member"  # the audit row's actor: the member (default) or None for token-only callers


@dataclass
class Ctx:
    member: object
    client: object
    make_member: Callable
    client_for: Callable

    @property
    def org(self):
        return self.member.organization

    @property
    def user(self):
        return self.member.user

    def obj(self, model, **kwargs):
        return make_tenant_object(model, self.org, self.user)

    def url(self, _route_name, **kwargs):
        return reverse(f"{API_NAMESPACE}:{_route_name}", kwargs=kwargs)

    def agent(self, **data):
        from apps.agents import services

        return services.agent_create(
            organization=self.org,
            actor=self.user,
            data={"name": f"Agent {uuid.uuid4().hex[:6]}", "role": "Researcher", "goal": "Find", **data},
        )


SECRET = "s3cr3t-" + uuid.uuid4().hex  # any body value of a secret-looking key carries this


# --- routes that write no audit row, and why ----------------------------------------------------

NOT_AUDITED = {
    ("auth-login", "post"): "signs in: issues tokens, changes no stored state of the organization",
    ("auth-refresh", "post"): "rotates a refresh token (blacklisting is token bookkeeping, not an organization change)",
    ("auth-logout", "post"): "revokes the caller's own tokens (token bookkeeping)",
    ("auth-magic-link", "post"): "sends a one-time sign-in link; stores only the single-use token",
    ("auth-verify-magic", "post"): "signs in with a magic link (consumes the single-use token)",
    ("auth-password-reset", "post"): "mails a reset token; stores nothing (the token is derived, not kept)",
    ("crew-debug", "post"): "validates YAML, stores nothing",
    ("workflow-validate", "post"): "validates a workflow definition, stores nothing",
    ("voice-synthesize", "post"): "turns text into speech audio, stores nothing",
    ("credential-verify", "post"): "checks a value against a stored credential, stores nothing",
    ("prompt-template-render", "post"): "renders a template, stores nothing",
    ("execution-generate-name", "post"): "suggests a run name, stores nothing",
    ("agent-generation", "post"): "drafts an agent definition, stores nothing",
    ("task-generation", "post"): "drafts a task definition, stores nothing",
    ("crew-generation", "post"): "drafts a crew definition, stores nothing",
    ("agent-test", "post"): "a synchronous test prompt: recorded as usage/trace, changes no configuration",
    (
        "agent-stream-prompt",
        "post",
    ): "streams a prompt: recorded as an execution with its trace, not as a config change",
    ("service-heartbeat", "post"): "liveness ping of a registered service (a timestamp), not a change",
    ("provider-validate", "post"): "test-calls a provider; records only its last validation result",
    ("mcp-messages", "post"): "protocol messages; each method that writes goes through its app's audited service",
    ("deployment-invoke", "post"): "invokes a deployment with its own key; recorded as an execution",
    ("service-refresh", "post"): "probes a registered service's endpoint; records only its last health status",
    ("knowledge-base-search", "post"): "searches a knowledge base, stores nothing",
    ("auth-sso-exchange", "post"): "exchanges a one-time SSO code for tokens (the sign-in is audited as sso.login)",
}


# --- recipes -----------------------------------------------------------------------------------

RECIPES: dict[tuple[str, str], Callable[[Ctx], Call]] = {}


def recipe(name: str, method: str):
    def register(fn):
        RECIPES[(name, method)] = fn
        return fn

    return register


CREW_AGENTS = "researcher:\n  role: Researcher\n  goal: Find facts\n  backstory: Curious.\n"
CREW_TASKS = "research_task:\n  description: Research\n  expected_output: Facts\n  agent: researcher\n"


@recipe("auth-register", "post")
def _register(ctx):
    email = f"new-{uuid.uuid4().hex[:8]}@example.com"
    ctx.client.credentials()  # anonymous

    def check(row, response):
        assert row.after.get("email") == email and "password" not in json.dumps(row.after)

    return Call(
        ctx.url("auth-register"),
        {"email": email, "password": PASSWORD, "org_name": "Audit Co"},
        kind="create",
        action="user.register",
        check=check,
    )


@recipe("auth-password", "post")
def _password_change(ctx):
    return Call(
        ctx.url("auth-password"),
        {"current_password": PASSWORD, "new_password": "Another-" + SECRET},
        action="user.password_change",
        check=lambda row, r: row.after == {"sessions_revoked": 0},
    )


@recipe("auth-password-reset-confirm", "post")
def _password_reset_confirm(ctx):
    from apps.accounts.services import _reset_token

    ctx.client.credentials()  # anonymous: the token is the credential
    return Call(
        ctx.url("auth-password-reset-confirm"),
        {"token": _reset_token(ctx.user), "new_password": "Another-" + SECRET},
        action="user.password_reset",
        check=lambda row, r: "sessions_revoked" in row.after,
    )


def _preferences(method):
    def build(ctx):
        return Call(
            ctx.url("auth-preferences"),
            {"theme": "dark"},
            action="preferences.update",
            check=lambda row, r: row.after["preferences"]["theme"] == "dark",
        )

    return build


recipe("auth-preferences", "put")(_preferences("put"))
recipe("auth-preferences", "patch")(_preferences("patch"))


@recipe("config-system", "post")
def _config_system(ctx):
    return Call(
        ctx.url("config-system"),
        {"settings": {"theme": "dark", "webhook_secret": SECRET}},
        action="config.system.update",
        check=lambda row, r: row.after["settings"]["theme"] == "dark",
    )


@recipe("config-user", "post")
def _config_user(ctx):
    return Call(
        ctx.url("config-user"),
        {"settings": {"tz": "UTC"}},
        action="config.user.update",
        check=lambda row, r: row.after["settings"] == {"tz": "UTC"},
    )


@recipe("system-config", "put")
def _system_config(ctx):
    return Call(
        ctx.url("system-config"),
        {"settings": {"theme": "dark", "api_key": SECRET}},
        action="system.modify",
        check=lambda row, r: row.model == "accounts.Organization" and row.after["settings"]["theme"] == "dark",
    )


def _as_operator(ctx):
    ctx.user.is_staff = True  # platform operators (staff) broadcast; their rows name no organization
    ctx.user.save(update_fields=["is_staff"])


@recipe("system-alerts", "post")
def _system_alert(ctx):
    _as_operator(ctx)
    return Call(
        ctx.url("system-alerts"),
        {"severity": "error", "message": "Database connection lost"},
        kind="create",
        action="system.alert",
        check=lambda row, r: row.after["severity"] == "error",
    )


@recipe("system-maintenance", "post")
def _system_maintenance(ctx):
    _as_operator(ctx)
    return Call(
        ctx.url("system-maintenance"),
        {"enabled": True, "message": "upgrade"},
        action="system.maintenance",
        after={"enabled": True, "message": "upgrade"},
        check=lambda row, r: row.before["enabled"] is False,
    )


#: platform-wide writes of the operators: their audit rows belong to no organization
PLATFORM_ROUTES = {"system-alerts", "system-maintenance"}


@recipe("retention-policy", "put")
@recipe("retention-policy", "patch")
def _retention_policy(ctx):
    return Call(
        ctx.url("retention-policy"),
        {"events_days": 12},
        action="retention.update",
        check=lambda row, r: row.model == "retention.RetentionPolicy" and row.after["events_days"] == 12,
    )


@recipe("system-modify", "post")
def _system_modify(ctx):
    agent = ctx.agent()
    return Call(
        ctx.url("system-modify"),
        {"type": "agent_config", "target_id": str(agent.pk), "changes": {"goal": "Decide"}},
        action="system.modify",
        object_id=str(agent.pk),
        after={"goal": "Decide"},
        check=lambda row, r: row.before["goal"] == "Find",
    )


@recipe("system-rollback", "post")
def _system_rollback(ctx):
    from apps.system.services import modification_apply

    agent = ctx.agent()
    modification_apply(
        organization=ctx.org, actor=ctx.user, type="agent_config", target_id=str(agent.pk), changes={"goal": "Decide"}
    )
    return Call(
        ctx.url("system-rollback"),
        {},
        action="system.rollback",
        object_id=str(agent.pk),
        after={"goal": "Find"},
        check=lambda row, r: row.before["goal"] == "Decide",
    )


@recipe("api-key-list", "post")
def _api_key_create(ctx):
    return Call(ctx.url("api-key-list"), {"name": "ci key"}, kind="create", action="api_key.create")


@recipe("api-key-detail", "delete")
def _api_key_revoke(ctx):
    from apps.accounts.services import api_key_create

    key, _ = api_key_create(organization=ctx.org, created_by=ctx.user, creator_role="owner", name="old")
    return Call(
        ctx.url("api-key-detail", pk=key.pk),
        action="api_key.revoke",
        object_id=str(key.pk),
        check=lambda row, r: row.after is not None,
    )


def _upload(route_name):
    def build(ctx):
        import io

        buffer = io.BytesIO(b"hello audit\n")
        buffer.name = "note.txt"
        return Call(ctx.url(route_name), {"file": buffer}, format="multipart", kind="create", action="file.create")

    return build


recipe("file-list", "post")(_upload("file-list"))
recipe("file-upload", "post")(_upload("file-upload"))


@recipe("agent-upload", "post")
def _agent_upload(ctx):
    import io

    buffer = io.BytesIO(b"hello audit\n")
    buffer.name = "note.txt"
    return Call(
        ctx.url("agent-upload", pk=ctx.agent().pk),
        {"file": buffer},
        format="multipart",
        kind="create",
        action="file.create",
    )


@recipe("agent-list", "post")
def _agent_create(ctx):
    return Call(
        ctx.url("agent-list"),
        {"name": "Scout", "role": "Researcher", "goal": "Find"},
        kind="create",
        action="agent.create",
        after={"name": "Scout"},
    )


@recipe("agent-memory", "post")
def _agent_memory(ctx):
    agent = ctx.agent()
    return Call(
        ctx.url("agent-memory", pk=agent.pk),
        {"memory_type": "fact", "content": {"k": 1}, "tags": ["x"]},
        kind="create",
        action="agent_memory.create",
    )


@recipe("agent-restart", "post")
def _agent_restart(ctx):
    agent = ctx.agent()
    return Call(ctx.url("agent-restart", pk=agent.pk), {}, action="agent.restart", object_id=str(agent.pk))


@recipe("credential-list", "post")
def _credential_create(ctx):
    return Call(
        ctx.url("credential-list"),
        {"service_name": "openai", "credential_type": "api_key", "credential_data": {"value": SECRET}},
        kind="create",
        action="credential.create",
    )


def _credential(ctx):
    from apps.agents.services import credential_create

    return credential_create(
        organization=ctx.org, actor=ctx.user, name=f"c-{uuid.uuid4().hex[:6]}", service_name="openai", value=SECRET
    )


@recipe("credential-detail", "patch")
def _credential_patch(ctx):
    credential = _credential(ctx)
    return Call(
        ctx.url("credential-detail", pk=credential.pk),
        {"credential_data": {"value": SECRET + "-new"}},
        action="credential.update",
        object_id=str(credential.pk),
    )


recipe("credential-detail", "put")(_credential_patch)


@recipe("credential-backup", "post")
def _credential_backup(ctx):
    _credential(ctx)
    ctx.client.post(ctx.url("auth-step-up-password"), {"password": PASSWORD}, format="json")  # always needed
    return Call(
        ctx.url("credential-backup"), {"passphrase": "correct horse battery " + SECRET}, action="credential.backup"
    )


@recipe("credential-restore", "post")
def _credential_restore(ctx):
    from apps.agents.services import credentials_backup

    _credential(ctx)
    backup = credentials_backup(organization=ctx.org, actor=ctx.user, passphrase="correct horse battery")
    other = ctx.make_member("owner")
    ctx.member, ctx.client = other, ctx.client_for(other)
    return Call(
        ctx.url("credential-restore"),
        {"backup": backup["backup"], "kdf": backup["kdf"], "passphrase": "correct horse battery"},
        action="credential.create",
        kind="create",
    )


@recipe("external-api-key-list", "post")
def _external_key(ctx):
    return Call(
        ctx.url("external-api-key-list"),
        {"name": "OpenAI", "service": "openai", "key": SECRET},
        kind="create",
        action="credential.create",
    )


@recipe("model-config-list", "post")
def _model_create(ctx):
    from apps.agents.models import Provider

    provider = ctx.obj(Provider)
    return Call(
        ctx.url("model-config-list"),
        {"name": f"m-{uuid.uuid4().hex[:6]}", "provider": provider.name, "model": "builtin"},
        kind="create",
        action="model_config.create",
    )


def _model_config_detail(method):
    def build(ctx):
        from apps.agents.models import ModelConfig

        config = ctx.obj(ModelConfig)
        url = ctx.url("model-config-detail", name=config.name)
        if method == "delete":
            return Call(url, kind="delete", action="model_config.delete", object_id=str(config.pk))
        return Call(
            url,
            {"model": "builtin-2"},
            action="model_config.update",
            object_id=str(config.pk),
            after={"model": "builtin-2"},
        )

    return build


for _method in ("delete", "patch", "put"):
    recipe("model-config-detail", _method)(_model_config_detail(_method))


@recipe("tool-list", "post")
def _tool_create(ctx):
    return Call(
        ctx.url("tool-list"),
        {
            "name": f"Search {uuid.uuid4().hex[:6]}",
            "tool_type": "custom",
            "configuration": {"api_endpoint": "https://api.example.com", "parameters": {}},
        },
        kind="create",
        action="tool.create",
    )


@recipe("tool-toggle-enabled", "patch")
def _tool_toggle(ctx):
    from apps.agents.models import Tool

    tool = ctx.obj(Tool)
    return Call(ctx.url("tool-toggle-enabled", pk=tool.pk), {}, action="tool.update", object_id=str(tool.pk))


@recipe("agent-template-list", "post")
def _agent_template(ctx):
    return Call(
        ctx.url("agent-template-list"),
        {"name": "t", "category": "x", "config_yaml": "role: r\ngoal: g\n"},
        kind="create",
        action=".create",
    )


@recipe("orchestration-template-list", "post")
def _orchestration_template(ctx):
    return Call(
        ctx.url("orchestration-template-list"),
        {"name": "t", "category": "x", "config_yaml": "pattern: sequential\n"},
        kind="create",
        action=".create",
    )


@recipe("agent-template-use", "post")
def _agent_template_use(ctx):
    from apps.agents.models import AgentTemplate
    from apps.agents.services import template_create

    template = template_create(
        AgentTemplate,
        organization=ctx.org,
        actor=ctx.user,
        data={"name": "t", "category": "x", "config_yaml": "role: r\ngoal: g\n"},
    )
    return Call(
        ctx.url("agent-template-use", pk=template.pk),
        {"name": "From template"},
        kind="create",
        action="agent_template.use",
    )


@recipe("orchestration-template-use", "post")
def _orchestration_template_use(ctx):
    template = ctx.client.get("/api/v1/templates/orchestrations").json()["items"][0]  # a built-in one
    return Call(
        ctx.url("orchestration-template-use", pk=template["id"]),
        {"name": "Blog"},
        kind="create",
        action="orchestration.create",
    )


@recipe("service-discover", "post")
def _service_discover(ctx):
    ctx.agent()
    return Call(ctx.url("service-discover"), {}, action="service.discover")


@recipe("deploy", "post")
def _deploy(ctx):
    agent = ctx.agent()
    return Call(
        ctx.url("deploy"), {"agent_id": str(agent.pk), "channels": ["api"]}, kind="create", action="deployment.create"
    )


@recipe("deployment-detail", "delete")
def _deployment_stop(ctx):
    from apps.agents.models import Deployment

    deployment = ctx.obj(Deployment)
    return Call(
        ctx.url("deployment-detail", pk=deployment.pk),
        action="deployment.update",
        object_id=str(deployment.pk),
        after={"status": "stopped"},
    )


@recipe("crew-list", "post")
def _crew_create(ctx):
    return Call(
        ctx.url("crew-list"),
        {"name": "c", "agents_yaml": CREW_AGENTS, "tasks_yaml": CREW_TASKS},
        kind="create",
        action="crew.create",
        after={"name": "c"},
    )


@recipe("crew-import-crew", "post")
def _crew_import(ctx):
    return Call(
        ctx.url("crew-import-crew"),
        {"name": "c", "agents_yaml": CREW_AGENTS, "tasks_yaml": CREW_TASKS},
        kind="create",
        action="crew.create",
    )


@recipe("task-definition-full", "put")
def _task_full(ctx):
    from apps.crews.models import TaskDefinition

    task = ctx.obj(TaskDefinition)
    return Call(
        ctx.url("task-definition-full", pk=task.pk),
        {"name": "t2", "description": "d2"},
        action="task.update",
        object_id=str(task.pk),
        after={"description": "d2"},
    )


def _run(route_name, body, *, detail=None):
    def build(ctx):
        kwargs = {}
        if detail == "agent":
            kwargs["pk"] = ctx.agent().pk
        elif detail == "orchestration":
            from apps.crews.services import orchestration_create

            kwargs["pk"] = orchestration_create(
                organization=ctx.org,
                actor=ctx.user,
                data={"name": "O", "pattern": "sequential", "agent_ids": [str(ctx.agent().pk)]},
            ).pk
        return Call(ctx.url(route_name, **kwargs), body, kind="create", action="execution.create")

    return build


recipe("agent-task", "post")(_run("agent-task", {"description": "Summarise the news"}, detail="agent"))
recipe("agent-command", "post")(_run("agent-command", {"command": "search_web", "params": {"q": "x"}}, detail="agent"))
recipe("agent-execute", "post")(
    _run(
        "agent-execute",
        {"command": {"action": "summarize", "parameters": {}}, "wait_for_completion": False},
        detail="agent",
    )
)
recipe("orchestration-execute", "post")(
    _run("orchestration-execute", {"inputs": {}, "wait_for_completion": False}, detail="orchestration")
)
recipe("execution-list", "post")(_run("execution-list", {"agents_yaml": CREW_AGENTS, "tasks_yaml": CREW_TASKS}))


@recipe("execution-batch", "post")
def _execution_batch(ctx):
    def created_the_row(row, response):
        assert row.object_id == response.json()["results"][0]["execution"]["execution_id"]

    return Call(
        ctx.url("execution-batch"),
        {"executions": [{"agents_yaml": CREW_AGENTS, "tasks_yaml": CREW_TASKS}]},
        kind="create",
        action="execution.create",
        check=created_the_row,
    )


@recipe("execution-replay", "post")
def _execution_replay(ctx):
    from django.utils import timezone

    from apps.runs.models import Execution, ExecutionStep

    source = ctx.obj(Execution)
    Execution.objects.filter(pk=source.pk).update(status="COMPLETED")
    for index, step in enumerate(("first", "second")):
        ExecutionStep.objects.create(
            organization=ctx.org,
            execution=source,
            key=f"task:{step}:0",
            kind="task",
            step=step,
            step_index=index,
            response={"text": step},
            created_at=timezone.now(),
        )

    def names_its_source(row, response):
        assert row.object_id == response.json()["execution_id"]
        assert Execution.objects.get(pk=row.object_id).replayed_from_id == source.pk

    return Call(
        ctx.url("execution-replay", pk=source.pk),
        {"from_step": "second"},
        kind="create",
        action="execution.create",
        check=names_its_source,
    )


@recipe("execution-cancel", "post")
def _execution_cancel(ctx):
    from apps.runs.models import Execution

    execution = ctx.obj(Execution)
    return Call(
        ctx.url("execution-cancel", pk=execution.pk), {}, action="execution.cancel", object_id=str(execution.pk)
    )


@recipe("schedule-list", "post")
def _schedule_create(ctx):
    from apps.crews.models import Crew

    crew = ctx.obj(Crew)
    return Call(
        ctx.url("schedule-list"),
        {"name": "Nightly", "cron_expression": "0 9 * * *", "crew_id": str(crew.pk), "inputs": {"topic": "AI"}},
        kind="create",
        action="schedule.create",
    )


def _schedule_action(route_name, action):
    def build(ctx):
        from apps.scheduler.models import Schedule

        schedule = ctx.obj(Schedule)
        return Call(ctx.url(route_name, pk=schedule.pk), {}, action=action, object_id=str(schedule.pk))

    return build


recipe("schedule-run-now", "post")(_schedule_action("schedule-run-now", "schedule.run_now"))
recipe("schedule-toggle", "patch")(_schedule_action("schedule-toggle", "schedule.toggle"))
recipe("schedule-toggle", "post")(_schedule_action("schedule-toggle", "schedule.toggle"))


# --- workflows, approvals, webhooks, step-up ------------------------------------------------------


def _workflow_definition(ctx, **extra):
    agent = ctx.agent()
    return {
        "trigger": {"type": "manual", "conditions": {}},
        "steps": [{"id": "a", "agent_number": agent.agent_number, "action": "do a", "parameters": {}}],
        "error_handling": {"strategy": "fail_fast", "notification_on_error": False},
        "retry_policy": {"max_attempts": 1, "backoff_strategy": "fixed", "delay_ms": 0},
        **extra,
    }


def _workflow(ctx, **extra):
    from apps.workflows.services import workflow_create

    workflow, secret = workflow_create(
        organization=ctx.org, actor=ctx.user, data={"name": "Flow", "definition": _workflow_definition(ctx, **extra)}
    )
    workflow.secret = secret
    return workflow


@recipe("workflow-list", "post")
def _workflow_create(ctx):
    return Call(
        ctx.url("workflow-list"),
        {"name": "Flow", "definition": _workflow_definition(ctx)},
        kind="create",
        action="workflow.create",
        after={"name": "Flow"},
    )


@recipe("workflow-execute", "post")
def _workflow_execute(ctx):
    workflow = _workflow(ctx)
    return Call(ctx.url("workflow-execute", pk=workflow.pk), {"inputs": {}}, action="workflow.execute")


@recipe("workflow-webhook-secret", "post")
def _workflow_secret(ctx):
    workflow = _workflow(ctx)
    return Call(
        ctx.url("workflow-webhook-secret", pk=workflow.pk),
        {},
        action="workflow.rotate_webhook_secret",
        object_id=str(workflow.pk),
    )


@recipe("workflow-run-cancel", "post")
def _workflow_run_cancel(ctx):
    from apps.workflows.services import workflow_start

    run = workflow_start(workflow=_workflow(ctx), actor=ctx.user, inputs={})
    return Call(ctx.url("workflow-run-cancel", pk=run.pk), {}, action="workflow.cancel")


@recipe("workflow-webhook", "post")
def _workflow_hook(ctx):
    import time

    from apps.workflows.services import webhook_signature

    workflow = _workflow(ctx, trigger={"type": "webhook", "conditions": {}})
    raw = json.dumps({"event": "push"}).encode()
    ts = str(int(time.time()))
    ctx.client.credentials()  # signed by the workflow's secret, no user credential
    return Call(
        ctx.url("workflow-webhook", token=workflow.webhook_token),
        raw=raw,
        action="workflow.execute",
        headers={"HTTP_X_KAI_TIMESTAMP": ts, "HTTP_X_KAI_SIGNATURE": webhook_signature(workflow.secret, ts, raw)},
        actor_id=None,
        check=lambda row, r: workflow.secret not in json.dumps(row.after, default=str),
    )


def _approval(ctx):
    from apps.approvals.services import approval_request

    return approval_request(organization=ctx.org, question="Ship it?", proposed={"text": "v1"}, actor=ctx.user)


recipe("approval-approve", "post")(
    lambda ctx: Call(ctx.url("approval-approve", pk=_approval(ctx).pk), {}, action="approval.approve")
)
recipe("approval-reject", "post")(
    lambda ctx: Call(ctx.url("approval-reject", pk=_approval(ctx).pk), {"feedback": "no"}, action="approval.reject")
)


def _webhook(ctx):
    from apps.webhooks.services import webhook_create

    webhook, _ = webhook_create(
        organization=ctx.org,
        actor=ctx.user,
        data={"name": "ops", "url": "http://127.0.0.1:9/hook", "events": ["execution.completed"]},
    )
    return webhook


def _sso_connection(ctx, **data):
    from apps.sso.services import connection_create

    return connection_create(
        organization=ctx.org,
        actor=ctx.user,
        data={
            "protocol": "oidc",
            "issuer_url": "https://idp.example.com",
            "client_id": "kai",
            "client_secret": SECRET,
            **data,
        },
    )


@recipe("sso-connection-list", "post")
def _sso_connection_create(ctx):
    return Call(
        ctx.url("sso-connection-list"),
        {
            "protocol": "oidc",
            "issuer_url": "https://idp.example.com",
            "client_id": "kai",
            "client_secret": SECRET,
            "allowed_domains": ["example.com"],
        },
        kind="create",
        action="sso.connection.create",
        after={"client_id": "kai"},
    )


@recipe("sso-connection-verify-domains", "post")
def _sso_verify_domains(ctx):
    connection = _sso_connection(ctx)  # no domains listed: nothing to look up in DNS
    return Call(
        ctx.url("sso-connection-verify-domains", pk=connection.pk),
        {},
        action="sso.domain.verify",
        object_id=str(connection.pk),
    )


@recipe("scim-token-detail", "delete")
def _scim_token_revoke(ctx):
    from apps.sso.scim import token_create

    token, _ = token_create(organization=ctx.org, actor=ctx.user, name="idp")
    return Call(
        ctx.url("scim-token-detail", pk=token.pk),
        action="scim.token.revoke",
        object_id=str(token.pk),
        check=lambda row, r: row.after is not None,
    )


@recipe("json-schema-list", "post")
def _json_schema_create(ctx):
    return Call(
        ctx.url("json-schema-list"),
        {"name": "report", "schema": {"type": "object"}},
        kind="create",
        action="json_schema.create",
        after={"name": "report"},
    )


def _json_schema(ctx):
    from apps.schemas.services import json_schema_create

    return json_schema_create(
        organization=ctx.org, actor=ctx.user, data={"name": f"s{uuid.uuid4().hex[:6]}", "schema": {"type": "object"}}
    )


for _method in ("put", "patch"):
    recipe("json-schema-detail", _method)(
        lambda ctx: (
            lambda row: Call(
                ctx.url("json-schema-detail", pk=row.pk),
                {"schema": {"type": "array"}},
                action="json_schema.update",
                after={"version": 2},
                object_id=str(row.pk),
            )
        )(_json_schema(ctx))
    )
recipe("json-schema-detail", "delete")(
    lambda ctx: (
        lambda row: Call(
            ctx.url("json-schema-detail", pk=row.pk), kind="delete", action="json_schema.delete", object_id=str(row.pk)
        )
    )(_json_schema(ctx))
)


@recipe("webhook-list", "post")
def _webhook_create(ctx):
    return Call(
        ctx.url("webhook-list"),
        {"name": "ops", "url": "http://127.0.0.1:9/hook", "events": ["execution.completed"], "secret": SECRET},
        kind="create",
        action="webhook.create",
        after={"name": "ops"},
    )


@recipe("webhook-test", "post")
def _webhook_test(ctx):
    return Call(ctx.url("webhook-test", pk=_webhook(ctx).pk), {}, action="webhook.test", kind="create")


@recipe("webhook-delivery-replay", "post")
def _webhook_replay(ctx):
    from apps.webhooks.services import webhook_send_test

    delivery = webhook_send_test(webhook=_webhook(ctx), actor=ctx.user)
    return Call(ctx.url("webhook-delivery-replay", pk=delivery.pk), {}, action="webhook.replay", kind="create")


def _authenticator():
    from django.conf import settings

    from tests.stepup.soft_authenticator import SoftAuthenticator

    return SoftAuthenticator(settings.KAI_WEBAUTHN_RP_ID, settings.KAI_WEBAUTHN_ORIGINS[0])


def _register_authenticator(ctx, authenticator):
    options = ctx.client.post(ctx.url("auth-biometric-setup"), {"name": "key"}, format="json").json()
    return {"name": "key", "credential": authenticator.create(options["public_key"])}


def _no_backup_code(row, response):
    codes = response.json().get("backup_codes") or []
    stored = json.dumps([row.before, row.after])
    assert not any(c in stored or c.replace("-", "") in stored for c in codes), "a backup code reached the audit row"


@recipe("auth-biometric-setup", "post")
def _biometric_setup(ctx):
    def check(row, response):
        assert len(response.json()["backup_codes"]) == 10 and row.after["backup_codes_issued"] == 10
        _no_backup_code(row, response)

    return Call(
        ctx.url("auth-biometric-setup"),
        _register_authenticator(ctx, _authenticator()),
        kind="create",
        action="stepup.authenticator.create",
        check=check,
    )


@recipe("auth-biometric-backup-codes", "post")
def _biometric_backup_codes(ctx):
    authenticator = _authenticator()
    ctx.client.post(ctx.url("auth-biometric-setup"), _register_authenticator(ctx, authenticator), format="json")
    options = ctx.client.post(ctx.url("auth-biometric-verify"), {}, format="json").json()
    ctx.client.post(
        ctx.url("auth-biometric-verify"), {"credential": authenticator.get(options["public_key"])}, format="json"
    )

    def check(row, response):
        assert len(response.json()["backup_codes"]) == 10 and row.after["backup_codes_generated_at"]
        _no_backup_code(row, response)

    return Call(ctx.url("auth-biometric-backup-codes"), {}, action="stepup.backup_codes.regenerate", check=check)


@recipe("auth-biometric-verify", "post")
def _biometric_verify(ctx):
    authenticator = _authenticator()
    ctx.client.post(ctx.url("auth-biometric-setup"), _register_authenticator(ctx, authenticator), format="json")
    options = ctx.client.post(ctx.url("auth-biometric-verify"), {}, format="json").json()
    return Call(
        ctx.url("auth-biometric-verify"),
        {"credential": authenticator.get(options["public_key"])},
        action="stepup.grant.webauthn",
    )


@recipe("auth-biometric-credential", "delete")
def _biometric_delete(ctx):
    from apps.stepup.models import WebAuthnCredential

    ctx.client.post(ctx.url("auth-biometric-setup"), _register_authenticator(ctx, _authenticator()), format="json")
    credential = WebAuthnCredential.objects.get(user=ctx.user)
    return Call(
        ctx.url("auth-biometric-credential", pk=credential.pk),
        action="stepup.authenticator.delete",
        kind="delete",
        object_id=str(credential.pk),
    )


@recipe("auth-step-up-password", "post")
def _step_up_password(ctx):
    return Call(ctx.url("auth-step-up-password"), {"password": PASSWORD}, action="stepup.grant.password")


@recipe("auth-step-up", "delete")
def _step_up_revoke(ctx):
    ctx.client.post(ctx.url("auth-step-up-password"), {"password": PASSWORD}, format="json")
    return Call(ctx.url("auth-step-up"), action="stepup.grant.revoke")


# --- voice --------------------------------------------------------------------------------------

recipe("voice-process", "post")(
    lambda ctx: Call(
        ctx.url("voice-process"), {"text_fallback": "list agents"}, kind="create", action="voice_command.create"
    )
)
for _method in ("post", "put", "patch"):
    recipe("voice-settings", _method)(
        lambda ctx: Call(ctx.url("voice-settings"), {"language": "de-DE"}, action="voice_settings.update")
    )


recipe("voice-train", "post")(
    lambda ctx: Call(
        ctx.url("voice-train"),
        {"intent": "book_flight", "phrases": ["fly me to"]},
        action="voice.train",
        object_id="book_flight",
        after={"added": ["fly me to"]},
    )
)


@recipe("voice-train", "delete")
def _voice_untrain(ctx):
    from apps.voice.services import voice_train

    voice_train(organization=ctx.org, actor=ctx.user, intent="book_flight", phrases=["fly me to"])
    return Call(
        ctx.url("voice-train") + "?intent=book_flight", action="voice.untrain", kind="delete", object_id="book_flight"
    )


@recipe("agent-voice", "post")
def _agent_voice(ctx):
    agent = ctx.agent()
    return Call(
        ctx.url("agent-voice", pk=agent.pk),
        {"text_input": "summarize my inbox"},
        kind="create",
        action="voice_command.create",
    )


# --- the sweep ---------------------------------------------------------------------------------

# --- knowledge -------------------------------------------------------------------------------------


def _knowledge_document(ctx):
    from apps.knowledge.models import Document

    return ctx.obj(Document)


@recipe("knowledge-document-list", "post")
def _knowledge_document_create(ctx):
    from apps.knowledge.models import KnowledgeBase

    kb = ctx.obj(KnowledgeBase)
    return Call(
        ctx.url("knowledge-document-list", knowledge_base_id=kb.pk),
        {"name": "n.txt", "text": "Otters."},
        kind="create",
        action="document.create",
    )


@recipe("knowledge-document-detail", "patch")
def _knowledge_document_update(ctx):
    doc = _knowledge_document(ctx)
    return Call(
        ctx.url("knowledge-document-detail", knowledge_base_id=doc.knowledge_base_id, pk=doc.pk),
        {"name": "renamed.txt"},
        after={"name": "renamed.txt"},
        object_id=str(doc.pk),
        action="document.update",
    )


@recipe("knowledge-document-detail", "delete")
def _knowledge_document_delete(ctx):
    doc = _knowledge_document(ctx)
    return Call(
        ctx.url("knowledge-document-detail", knowledge_base_id=doc.knowledge_base_id, pk=doc.pk),
        kind="delete",
        object_id=str(doc.pk),
        action="document.delete",
    )


@recipe("knowledge-document-reingest", "post")
def _knowledge_document_reingest(ctx):
    doc = _knowledge_document(ctx)
    return Call(
        ctx.url("knowledge-document-reingest", knowledge_base_id=doc.knowledge_base_id, pk=doc.pk),
        object_id=str(doc.pk),
        action="document.reingest",
        after={"version": 2},
    )


def _ready_document(ctx):
    from apps.knowledge.models import Document

    doc = _knowledge_document(ctx)
    Document.objects.filter(pk=doc.pk).update(status="READY")
    return Document.objects.get(pk=doc.pk)


@recipe("knowledge-extractions", "post")
def _knowledge_extraction_start(ctx):
    doc, agent = _ready_document(ctx), ctx.agent()
    return Call(
        ctx.url("knowledge-extractions"),
        {"document_id": str(doc.pk), "agent_id": str(agent.pk)},
        kind="create",
        action="execution.create",
    )


@recipe("knowledge-extraction-apply", "post")
def _knowledge_extraction_apply(ctx):
    from apps.knowledge.extraction import extraction_start
    from apps.runs.models import Execution

    run = extraction_start(organization=ctx.org, actor=ctx.user, document=_ready_document(ctx), agent=ctx.agent())
    Execution.objects.filter(pk=run.pk).update(status="COMPLETED", result='{"entities": []}')
    body = {"entities": [{"key": "o", "type": "animal", "label": "Otter"}], "relationships": []}
    return Call(
        ctx.url("knowledge-extraction-apply", execution_id=run.pk),
        body,
        kind="create",
        action="entity.create",
        after={"label": "Otter"},
    )


@recipe("knowledge-relationship-list", "post")
def _knowledge_relationship_create(ctx):
    from apps.knowledge.models import Entity

    a, b = ctx.obj(Entity), ctx.obj(Entity)
    return Call(
        ctx.url("knowledge-relationship-list"),
        {"source_id": str(a.pk), "target_id": str(b.pk), "type": "related_to"},
        kind="create",
        action="relationship.create",
    )


def _knowledge_relationship_update(ctx):
    from apps.knowledge.models import Relationship

    rel = ctx.obj(Relationship)
    return Call(
        ctx.url("knowledge-relationship-detail", pk=rel.pk),
        {"type": "part_of"},
        after={"type": "part_of"},
        object_id=str(rel.pk),
        action="relationship.update",
    )


def _knowledge_entity_update(ctx):
    from apps.knowledge.models import Entity

    entity = ctx.obj(Entity)
    return Call(
        ctx.url("knowledge-entity-detail", pk=entity.pk),
        {"label": "Sea otter"},
        after={"label": "Sea otter"},
        object_id=str(entity.pk),
        action="entity.update",
    )


recipe("knowledge-entity-detail", "put")(_knowledge_entity_update)
recipe("knowledge-entity-detail", "patch")(_knowledge_entity_update)
recipe("knowledge-relationship-detail", "put")(_knowledge_relationship_update)
recipe("knowledge-relationship-detail", "patch")(_knowledge_relationship_update)


def _generic(route: Route, method: str, action: str, ctx: Ctx) -> Call | None:
    model = tenant_model_of(route.view)
    if model is None:
        return None
    lookup = getattr(route.view, "lookup_url_kwarg", None) or getattr(route.view, "lookup_field", "pk")
    if action == "destroy":
        obj = ctx.obj(model)
        return Call(
            ctx.url(route.name, **{lookup: getattr(obj, getattr(route.view, "lookup_field", "pk"))}),
            kind="delete",
            object_id=str(obj.pk),
            action=".delete",
        )
    if action in ("update", "partial_update"):
        obj = ctx.obj(model)
        name, value = _writable_text_field(route.view)
        if name is None:
            return None
        return Call(
            ctx.url(route.name, **{lookup: getattr(obj, getattr(route.view, "lookup_field", "pk"))}),
            {name: value},
            after={name: value},
            object_id=str(obj.pk),
            action=".update",
        )
    if action == "create":
        body = _body_for(route.view, ctx)
        if body is None:
            return None
        return Call(ctx.url(route.name), body, kind="create", action=".create")
    return None


def _serializer(view):
    serializer_class = getattr(view, "serializer_class", None)
    return serializer_class() if serializer_class else None


def _writable_text_field(view):
    from rest_framework import serializers

    serializer = _serializer(view)
    if serializer is None:
        return None, None
    for name in ("description", "name", "title", "notes"):
        f = serializer.fields.get(name)
        if (
            f is not None
            and not f.read_only
            and isinstance(f, serializers.CharField)
            and not isinstance(f, serializers.ChoiceField)
        ):
            return name, f"changed {uuid.uuid4().hex[:8]}"
    return None, None


def _body_for(view, ctx: Ctx) -> dict | None:
    from rest_framework import serializers

    serializer = _serializer(view)
    if serializer is None:
        return None
    body = {}
    for name, f in serializer.fields.items():
        if f.read_only or not f.required:
            continue
        if isinstance(f, serializers.ChoiceField):
            body[name] = next(iter(f.choices))
        elif isinstance(f, serializers.EmailField):
            body[name] = f"{uuid.uuid4().hex[:8]}@example.com"
        elif isinstance(f, serializers.URLField):
            body[name] = "https://example.com/hook"
        elif isinstance(f, serializers.CharField):
            body[name] = SECRET if SECRET_KEY_RE.search(name) else f"{name}-{uuid.uuid4().hex[:8]}"
        elif isinstance(f, serializers.BooleanField):
            body[name] = False
        elif isinstance(f, (serializers.IntegerField, serializers.FloatField, serializers.DecimalField)):
            body[name] = 1
        elif isinstance(f, (serializers.JSONField, serializers.DictField)):
            body[name] = {}
        elif isinstance(f, serializers.ListField):
            body[name] = []
        elif isinstance(f, serializers.PrimaryKeyRelatedField) and is_tenant_model(f.queryset.model):
            body[name] = str(ctx.obj(f.queryset.model).pk)
        else:
            return None
    return body


class LogCapture(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        from kai_platform.logging import JsonFormatter, RequestContextFilter

        self.addFilter(RequestContextFilter())
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))


def _secret_values(data, found: set) -> set:
    """Values of secret-looking keys (at any depth) long enough to be credentials."""
    if isinstance(data, dict):
        for key, value in data.items():
            if SECRET_KEY_RE.search(str(key)) and isinstance(value, str) and len(value) >= 8:
                found.add(value)
            else:
                _secret_values(value, found)
    elif isinstance(data, list):
        for item in data:
            _secret_values(item, found)
    return found


def test_the_not_audited_allow_list_names_only_real_write_routes():
    """The allow-list cannot rot: every entry is a write route that exists (so removing a route
    or renaming it forces its entry out), and those routes are the only ones the sweep leaves out."""
    written = {(route.name, method) for route, method, _action in CASES}
    assert set(NOT_AUDITED) <= written, sorted(set(NOT_AUDITED) - written)


@pytest.mark.parametrize("case", [c for c in CASES if (c[0].name, c[1]) not in NOT_AUDITED], ids=case_id)
def test_every_write_route_leaves_one_audit_row_and_no_secret(case, make_member, client_for, settings, request):
    route, method, action = case
    key = (route.name, method)
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed: 130 members
    settings.KAI_NETWORK_ALLOWLIST = ["127.0.0.1", "localhost"]
    settings.KAI_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    member = make_member("owner")
    client = client_for(member)
    ctx = Ctx(member, client, make_member, client_for)
    generic = key not in RECIPES
    call = _generic(route, method, action, ctx) if generic else RECIPES[key](ctx)
    member, client = ctx.member, ctx.client  # a recipe may act as another member
    assert call is not None, (
        f"{method.upper()} {route.route} ({route.view.__module__}.{route.view.__name__}.{action}) writes but has "
        f"no recipe in tests/test_audit_coverage.py RECIPES and is not in NOT_AUDITED"
    )

    before_ids = set(AuditEvent.objects.values_list("id", flat=True))
    capture = LogCapture()
    root = logging.getLogger()
    root.addHandler(capture)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    try:
        if call.raw is not None:
            response = getattr(client, method)(call.url, call.raw, content_type="application/json", **call.headers)
        else:
            response = getattr(client, method)(call.url, call.body, format=call.format, **call.headers)
    finally:
        root.removeHandler(capture)
        root.setLevel(old_level)
    rows = list(AuditEvent.objects.exclude(id__in=before_ids))
    if generic and response.status_code == 405 and not rows:
        return  # the view refuses this method outright (e.g. runs are started elsewhere): nothing is written
    assert response.status_code in call.statuses, (method, call.url, response.status_code, response.content[:600])

    assert len(rows) == 1, f"{method.upper()} {call.url} wrote {len(rows)} audit rows: {[r.action for r in rows]}"
    row = rows[0]
    if call.action:
        assert row.action.endswith(call.action), (row.action, call.action)
    if route.name in PLATFORM_ROUTES:
        assert row.organization_id is None and row.actor_id == member.user.pk
    elif route.name != "auth-register":
        assert row.organization_id == member.organization.pk
        assert row.actor_id == (member.user.pk if call.actor_id == "member" else call.actor_id)
    assert row.request_id == response["X-Request-ID"]
    if call.kind == "create":
        assert row.before is None and row.after, (row.before, row.after)
    elif call.kind == "delete":
        assert row.after is None and row.before, (row.before, row.after)
    else:
        assert row.before is not None or row.after is not None
    if call.object_id is not None:
        assert row.object_id == call.object_id
    for name, value in call.after.items():
        assert row.after is not None and row.after.get(name) == value, (name, value, row.after)
    if call.check:
        call.check(row, response)

    body = None
    try:
        body = response.json()
    except Exception:
        pass
    secrets = _secret_values(call.body or {}, set()) | _secret_values(body or {}, set()) | {PASSWORD, SECRET}
    if "HTTP_AUTHORIZATION" in client._credentials:
        secrets.add(client._credentials["HTTP_AUTHORIZATION"].split()[-1])
    stored = json.dumps([row.before, row.after], default=str)
    logs = "\n".join(capture.lines)
    for secret in secrets:
        assert secret not in stored, f"a secret reached the audit row of {method.upper()} {call.url}"
        assert secret not in logs, f"a secret reached a log line of {method.upper()} {call.url}"


def test_the_sweep_found_the_write_routes():
    names = {route.name for route, _, _ in CASES}
    assert {"agent-list", "agent-detail", "api-key-list", "system-modify", "system-rollback"} <= names
    stale = set(NOT_AUDITED) - {(route.name, method) for route, method, _ in CASES}
    assert not stale, f"NOT_AUDITED names routes that no longer exist: {stale}"


def test_secret_detection_is_not_vacuous():
    assert _secret_values({"a": {"api_key": "kai_abcdefgh_123"}, "value": "sk-12345678"}, set()) == {
        "kai_abcdefgh_123",
        "sk-12345678",
    }
