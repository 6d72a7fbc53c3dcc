"""How a runs worker ends its completed runs: a lone run is ended at once by its own thread; the
runs whose runner returned while a batch was being ended are ended together, in one
transaction — their last batches in one statement (``RunRecorder.flush_many``), then their
transitions to COMPLETED (each run's history row and event) in one statement per organization
(``execution_transition_many``; ``execution_transition`` for a lone run), the organization's
event lock taken once, then the shared usage counters; the terminal hooks once it committed, a
batch hook once for all of them; the events' listeners read what they need once for the batch
(``listener_reads_shared``: the webhooks of an event type). Once that committed, their agents'
run counters are written, one UPDATE per agent.
A batch that fails leaves each run to end alone, the way ``apps.runs.lifecycle`` always could."""

from __future__ import annotations

import logging

from django.db import transaction

from apps.events.services import listener_reads_shared
from apps.runs import registry as plugins
from apps.runs.batching import Batcher
from apps.runs.models import ExecutionStatus
from apps.runs.recorder import RunRecorder
from apps.runs.services import execution_transition, execution_transition_many, terminal_hooks_batched

logger = logging.getLogger(__name__)
S = ExecutionStatus


def _complete_batch(items: list[tuple]) -> list[bool]:
    """(RunContext, result) → whether the run was moved to COMPLETED (False: it had ended elsewhere)."""
    taken: list = []
    try:
        with transaction.atomic(), terminal_hooks_batched(), listener_reads_shared():
            counters: list = []
            taken = RunRecorder.flush_many([ctx.recorder for ctx, _ in items], counters=counters)
            if len(items) == 1:
                ctx, result = items[0]
                ended = [
                    execution_transition(
                        execution_id=ctx.execution.pk, to=S.COMPLETED, reason="completed", result=result, error=""
                    )
                ]
            else:
                ended = _end_many(items)
            # after the ends (the event lock): committed with them, so a run's waiter, woken on
            # commit, reads its usage without two more round trips before the signal
            RunRecorder.write_counters(counters)
    except Exception:
        RunRecorder.put_back(taken)  # each run's last batch goes with its own end instead
        raise
    record_agent_runs([(ctx.execution, ctx.elapsed(), "") for ctx, _ in items])
    return ended


def _end_many(items: list[tuple]) -> list[bool]:
    """RUNNING → COMPLETED of the batch's runs: one transition statement per organization."""
    organizations: dict = {}
    for ctx, result in items:
        runs = organizations.setdefault(ctx.execution.organization_id, [])
        runs.append((ctx.execution.pk, "completed", {"result": result, "error": ""}))
    moved: set[str] = set()
    for organization_id, runs in organizations.items():
        moved |= execution_transition_many(organization_id=organization_id, to=S.COMPLETED, runs=runs)
    return [str(ctx.execution.pk) in moved for ctx, _ in items]


def record_agent_runs(runs: list[tuple]) -> None:
    """``[(execution, seconds, error), …]`` into their agents' run counters: the runs of one agent
    in one write (its last error, if any, is the one kept). A failure is logged, never raised."""
    agents: dict = {}
    for execution, seconds, error in runs:
        if execution.agent_id is None:
            continue
        entry = agents.setdefault(execution.agent_id, [execution.agent, 0.0, "", 0])
        entry[1] += seconds
        entry[2] = error or entry[2]
        entry[3] += 1
    for agent, seconds, error, count in agents.values():
        try:
            plugins.service("agent_record_run")(agent, seconds, error, count)
        except Exception:
            logger.warning("could not record the run in the agent's counters", exc_info=True)


completer = Batcher("kai-run-completion", _complete_batch)


def complete(ctx, result) -> bool:
    """End a run COMPLETED with its result and its last batch, batched with the runs ending now;
    its agent's counters count it once that committed."""
    return completer.submit((ctx, result))
