"""Deployments: an agent or orchestration exposed with its own key (MCP, HTTP), and their invocations."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from django.db import transaction
from django.utils import timezone
from rest_framework import exceptions

from apps.agents import orchestrations
from apps.agents.models import Agent, Deployment, DeploymentStatus
from apps.agents.services.common import KEY_ALPHABET
from apps.audit.services import audit_record, audit_row, snapshot
from apps.events.services import publish
from apps.runs.models import ExecutionStatus
from apps.runs.services import wait_for_terminal
from kai_platform.db.compiled import CompiledRead
from kai_platform.db.statements import execute_together, insert_statement

# --- deployments -------------------------------------------------------------------------------

DEPLOYMENT_KEY_PREFIX = "kdep_"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def deployment_create(
    *, organization, actor, agent: Agent | None, name: str | None, channels: list[str], orchestration_id=None
) -> tuple[Deployment, str]:
    """Deploy an agent, or (``agent=None``) the organization's orchestration ``orchestration_id``."""
    orchestration = None
    if agent is None:
        orchestration = orchestrations.orchestration_get(organization=organization, orchestration_id=orchestration_id)
        if orchestration is None:
            raise exceptions.NotFound("No such orchestration.")
        deployed = orchestration
    else:
        deployed = agent
    prefix = "".join(secrets.choice(KEY_ALPHABET) for _ in range(12))
    secret = "".join(secrets.choice(KEY_ALPHABET) for _ in range(40))
    raw = f"{DEPLOYMENT_KEY_PREFIX}{prefix}_{secret}"
    with transaction.atomic():
        deployment = Deployment.objects.create(
            organization=organization,
            created_by=actor if getattr(actor, "pk", None) else None,
            agent=agent,
            orchestration_id=orchestration.pk if orchestration else orchestration_id,
            name=name or deployed.name,
            channels=channels,
            key_prefix=prefix,
            key_hash=_digest(raw),
        )
        audit_record(
            organization=organization,
            actor=actor,
            action="deployment.create",
            instance=deployment,
            after=snapshot(deployment),
        )
        publish(
            organization,
            "deployment.started",
            {
                "deployment_id": str(deployment.pk),
                "agent_id": str(agent.pk) if agent else None,
                "orchestration_id": str(orchestration.pk) if orchestration else None,
            },
            agent=agent,
            actor=actor,
            owner=deployed.created_by,
            component="deployments",
        )
    return deployment, raw


def deployment_stop(*, deployment: Deployment, actor) -> Deployment:
    """Stopping revokes: the deployment key stops working at once."""
    with transaction.atomic():
        before = snapshot(deployment)
        if deployment.status != DeploymentStatus.STOPPED:
            deployment.status = DeploymentStatus.STOPPED
            deployment.stopped_at = timezone.now()
            deployment.save(update_fields=["status", "stopped_at", "updated_at"])
            audit_record(
                organization=deployment.organization,
                actor=actor,
                action="deployment.update",
                instance=deployment,
                before=before,
                after=snapshot(deployment),
            )
            publish(
                deployment.organization_id,
                "deployment.stopped",
                {"deployment_id": str(deployment.pk)},
                agent=deployment.agent_id,
                actor=actor,
                component="deployments",
            )
    return deployment


#: a running deployment by its key's prefix, with what its invocation uses (compiled once: the
#: read is on every invocation's path)
_RUNNING_BY_PREFIX = CompiledRead(
    lambda prefix: (
        Deployment.objects.select_related("organization", "agent__organization", "created_by")
        .filter(key_prefix=prefix, status=DeploymentStatus.RUNNING)
        .order_by("pk")[:1]
    )
)


def deployment_authenticate(*, deployment_id, raw_key: str) -> Deployment | None:
    if not raw_key or not raw_key.startswith(DEPLOYMENT_KEY_PREFIX):
        return None
    prefix = raw_key[len(DEPLOYMENT_KEY_PREFIX) :].split("_", 1)[0]
    deployment = _RUNNING_BY_PREFIX.first(prefix)
    if deployment is None or str(deployment.pk) != str(deployment_id):
        return None
    if not hmac.compare_digest(deployment.key_hash, _digest(raw_key)):
        return None
    return deployment


def deployment_record_invocation(*, deployment: Deployment) -> None:
    execute_together([_invocation_count(deployment)])


def _invocation_count(deployment: Deployment) -> tuple[str, list]:
    """The UPDATE that counts one invocation of ``deployment``."""
    table = Deployment._meta.db_table
    return (
        f'UPDATE "{table}" SET "invocation_count" = "invocation_count" + 1, "last_invoked_at" = %s WHERE "id" = %s',
        [timezone.now(), deployment.pk],
    )


def deployment_invoke(
    *, deployment: Deployment, prompt: str, params: dict | None = None, channel: str = "api"
) -> tuple[int, dict]:
    """Run a deployment once for a holder of its key (``channel``: api or mcp), as the deployment's
    creator: a run on a worker, waited for (``apps.agents.calls``). The call is counted and
    audited (naming its execution) with its run: in the run's own round trip for an agent. Returns
    (HTTP status, body): 200 with the answer, 202 with the ``execution_id`` while it runs."""
    # deferred: cycle — apps.agents.calls → apps.agents.runtime → apps.agents.services → this module, each at load
    from apps.agents import calls

    def record(execution) -> list[tuple[str, list]]:  # the count and the audit row's statements
        audit = audit_row(
            organization=deployment.organization,
            actor=deployment.created_by,
            action="deployment.invoke",
            instance=deployment,
            actor_type="api_key",
            after={
                "channel": channel,
                "agent_id": str(deployment.agent_id) if deployment.agent_id else None,
                "orchestration_id": str(deployment.orchestration_id) if deployment.orchestration_id else None,
                "execution_id": str(execution.pk),
            },
        )
        return [_invocation_count(deployment), *([insert_statement(audit)] if audit is not None else [])]

    if deployment.agent_id is None:
        return _deployment_run_orchestration(deployment=deployment, prompt=prompt, params=params, record=record)
    return calls.agent_call(
        agent=deployment.agent,
        actor=deployment.created_by,
        prompt=prompt,
        params=params,
        source="deployment",
        run_name=f"deployment {deployment.name} ({channel})",
        also=record,
    )


#: how long an invocation of a deployed orchestration waits for its run (on a worker)
DEPLOYMENT_RUN_WAIT_SECONDS = 120.0


def _deployment_run_orchestration(
    *, deployment: Deployment, prompt: str, params: dict | None, record
) -> tuple[int, dict]:
    """Start the deployed orchestration's run (``inputs: {prompt}``) and wait for it; a run still
    going after the wait is answered 202 with its execution id and status."""
    orchestration = orchestrations.orchestration_get(
        organization=deployment.organization_id, orchestration_id=deployment.orchestration_id
    )
    if orchestration is None:
        raise exceptions.NotFound("The deployed orchestration no longer exists.")
    started = time.perf_counter()
    execution = orchestrations.orchestration_start(
        orchestration=orchestration, actor=deployment.created_by, inputs={"prompt": prompt}, params=params
    )
    execute_together(record(execution))  # one round trip, one transaction
    execution = wait_for_terminal(execution_id=execution.pk, timeout=DEPLOYMENT_RUN_WAIT_SECONDS)
    result = execution.result if isinstance(execution.result, dict) else {}
    return (200 if execution.is_terminal else 202), {
        "output": result.get("output") if execution.status == ExecutionStatus.COMPLETED else None,
        "execution_id": str(execution.pk),
        "status": execution.status,
        "error": execution.error or "",
        "outputs": result.get("outputs") or {},
        "agents_executed": result.get("agents_executed") or [],
        "cost": execution.cost,
        "trace_id": execution.trace_id,
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
    }
