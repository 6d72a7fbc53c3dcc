"""The one way to call an agent: every entry point (REST test / task / command / execute /
stream-prompt, deployments over the API and MCP, voice, socket commands) starts an Execution here
and the run engine's worker answers it (``apps.agents.runs``). Nothing here calls a model.

``agent_call_start`` refuses what would fail anyway before a run is queued (a disabled agent, a
model no provider serves, a spent budget), with the same error on every path; ``agent_call`` also
waits for the run and turns its end into the answer of a synchronous API (or a 202 with the
``execution_id`` when the wait timed out).
"""

from __future__ import annotations

from decimal import Decimal
from typing import NoReturn

from django.conf import settings
from rest_framework.exceptions import APIException

from apps.agents.errors import AgentDisabled, BudgetExceeded, ProviderRejected, ProviderTimeout, ProviderUnavailable
from apps.agents.runtime import model_resolve
from apps.runs import llm as llm_layer
from apps.runs.models import Execution, ExecutionKind, ExecutionStatus
from apps.runs.services import batch_memo, execution_create, wait_for_terminal
from kai_platform.api.errors import Conflict, Unprocessable, codes

#: money amounts of the API have six decimal places (``DecimalField(max_digits=14, decimal_places=6)``)
MICRODOLLAR = Decimal("0.000001")

#: the kinds of run that are one agent answering (the agents app registers their runners)
AGENT_KINDS = frozenset(
    {
        ExecutionKind.AGENT_TASK,
        ExecutionKind.AGENT_COMMAND,
        ExecutionKind.AGENT_EXECUTE,
        ExecutionKind.AGENT_PROMPT,
        ExecutionKind.AGENT_TEST,
    }
)


def agent_check_runnable(*, agent) -> None:
    """A disabled agent takes no new runs (AGENT_005)."""
    if not agent.is_active or agent.status == "disabled":
        raise AgentDisabled(f"Agent {agent.name!r} is disabled.", errors=[{"field": "agent", "message": "disabled"}])


def agent_check_budgets(*, agent, model: str = "") -> None:
    """The provider's, the agent's and the organization's monthly budgets, as the engine checks them
    before each model call (same message), without calling anything: refused before a run is queued."""

    def refusal():
        organization = agent.organization
        try:
            # unknown → 422 AGENT_004; the providers read once a second per process, not once a run
            provider = llm_layer.provider_of(
                organization=organization, model_name=model or agent.llm, resolve=model_resolve
            )
            llm_layer.check_budgets_for(organization=organization, provider=provider, agent=agent)
        except llm_layer.BudgetExceeded as exc:
            return BudgetExceeded(str(exc))
        except APIException as exc:
            return exc
        return None

    error = batch_memo(("agent_check_budgets", agent.pk, model), refusal)  # once per batch of runs
    if error is not None:
        raise error


def agent_call_start(
    *,
    agent,
    actor,
    kind: str,
    definition: dict,
    run_name: str = "",
    inputs: dict | None = None,
    params: dict | None = None,
    model: str = "",
    priority: int = 5,
    stream_id: str = "",
    **create,
) -> Execution:
    """Check the agent may run, then create its PENDING run (queued on commit)."""
    if kind not in AGENT_KINDS:
        raise ValueError(f"{kind!r} is not a kind of agent run")
    agent_check_runnable(agent=agent)
    agent_check_budgets(agent=agent, model=model)
    return execution_create(
        organization=agent.organization,
        actor=actor,
        kind=kind,
        agent=agent,
        run_name=(run_name or f"{agent.name} - {kind}")[:300],
        definition=definition,
        inputs=inputs,
        params=params,
        model=model,
        priority=priority,
        stream_id=stream_id,
        **create,
    )


def sync_wait_seconds() -> float:
    return float(getattr(settings, "KAI_SYNC_RUN_WAIT_SECONDS", 120))


def agent_call(
    *,
    agent,
    actor,
    prompt: str,
    params: dict | None = None,
    source: str = "test",
    timeout: float | None = None,
    run_name: str = "",
    also=None,
) -> tuple[int, dict]:
    """A synchronous prompt (``agents/{id}/test``, deployments): start the run, wait for it.
    Returns (HTTP status, body): 200 with the answer and its ``execution_id``; 202 with the
    ``execution_id`` and status when the run is still going after ``timeout``; a failed run raises
    the error its failure names (the same envelope the API gives for it everywhere).
    ``also(execution) -> [(sql, params)]``: the statements of the caller's record of the call,
    written with the run (one transaction, one round trip); nothing of it when the run is refused."""
    execution = agent_call_start(
        agent=agent,
        actor=actor,
        kind=ExecutionKind.AGENT_TEST,
        definition={"prompt": prompt, "source": source},
        params=params,
        priority=8,
        run_name=run_name or f"{agent.name} - {source}",
        durable=False,  # answered once the run has ended: its end's commit makes the create durable
        also_write=also,
    )
    execution = wait_for_terminal(
        execution_id=execution.pk,
        timeout=sync_wait_seconds() if timeout is None else timeout,
        only=ANSWER_FIELDS,  # answered from the end's signal, not a read of the row
    )
    return answer_of(execution)


#: what ``answer_of`` reads of a run besides its id and status
ANSWER_FIELDS = ("result", "error")


def answer_of(execution: Execution) -> tuple[int, dict]:
    """The synchronous answer of an agent run (see ``agent_call``)."""
    if not execution.is_terminal:
        return 202, {"execution_id": str(execution.pk), "status": execution.status}
    if execution.status == ExecutionStatus.COMPLETED:
        body = dict(execution.result) if isinstance(execution.result, dict) else {"output": execution.result}
        if isinstance(body.get("cost"), (str, int, float)) and not isinstance(body["cost"], bool):
            # a decimal string with six places, as every other money amount of the API (a Decimal here would
            # leave as a JSON number: this body is not rendered by a serializer)
            body["cost"] = format(Decimal(str(body["cost"])).quantize(MICRODOLLAR), "f")
        body["execution_id"] = str(execution.pk)
        return 200, body
    raise_for_failed_run(execution)


def raise_for_failed_run(execution: Execution) -> NoReturn:
    """The API error of an ended run that did not complete (the engine's ``error_info`` says why)."""
    info = (execution.result or {}).get("error_info") if isinstance(execution.result, dict) else None
    info = info or {}
    kind, detail = info.get("type") or "", execution.error or execution.status.lower()
    extra = {"execution_id": str(execution.pk), "status": execution.status}
    if execution.status == ExecutionStatus.CANCELLED:
        raise Conflict(f"The run was cancelled: {detail}", extra=extra)
    if kind == "budget_exceeded":
        raise BudgetExceeded(detail, extra=extra)
    provider = info.get("provider") or "the provider"
    if kind == "provider_timeout":
        raise ProviderTimeout(f"Provider '{provider}' did not answer within {info.get('timeout', 0):g} s.", extra=extra)
    if kind in ("provider_connection", "provider_provider", "circuit_open"):
        raise ProviderUnavailable(f"Provider '{provider}' failed: {detail}", extra=extra)
    if kind.startswith("provider_"):
        raise ProviderRejected(f"Provider '{provider}': {detail}", extra=extra)
    if kind == "model_unavailable":
        raise Unprocessable(detail, code=codes.AGENT_CONFIG_INVALID, errors=[{"field": "llm", "message": detail}])
    raise Unprocessable(f"The run failed: {detail}", code=codes.AGENT_EXECUTION_FAILED, extra=extra)
