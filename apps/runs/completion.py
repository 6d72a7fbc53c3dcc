"""How a runs worker ends its completed runs: a lone run is ended at once by its own thread; the
runs whose runner returned while a batch was being ended are ended together. Either way the end
is ONE round trip: their last batches (``LastBatches``: counters, logs and spans; then the usage
rollup and the providers' usage), then their transitions to COMPLETED (each run's history row and
event) in one statement per organization (``transition_many_statement``), sent as one string that
the server runs as one transaction — so the organization's event lock, taken by the last
statements, is held only while the server finishes that string, never across a round trip or a
wait for Python. When a publish listener wants the events (``listeners_want`` asked first, e.g. a
webhook subscribed to ``execution.completed``) or the caller is inside a transaction, the same
string runs inside a transaction and the listeners inside it, as ``publish``'s do.
Once that committed, every caller is let go and signals its own run's waiters; the thread of the
batch's first run also calls the terminal hooks (a batch hook once for all of them) and writes the
agents' run counters (one UPDATE per agent), while the batch's thread ends the next batch. A batch that fails leaves each run to end alone, the
way ``apps.runs.lifecycle`` always could."""

from __future__ import annotations

import logging
from contextlib import nullcontext
from functools import partial

from django.db import connection, transaction

from apps.events.services import listener_reads_shared, listeners_want
from apps.runs import registry as plugins
from apps.runs.batching import Batcher
from apps.runs.models import ExecutionStatus
from apps.runs.recorder import LastBatches
from apps.runs.transitions import (
    signal_ended,
    terminal_hooks_batched,
    transition_many_published,
    transition_many_statement,
)
from kai_platform.tenancy.locks import organization_lock_key

logger = logging.getLogger(__name__)
S = ExecutionStatus


def _complete_batch(items: list[tuple]) -> list[bool]:
    """(RunContext, result) → whether the run was moved to COMPLETED (False: it had ended
    elsewhere); the waiters signalled, the terminal hooks and the agents' counters written before
    it returns."""
    moved, ended_runs, agent_runs, signals = _end_batch(items)
    _after_commit(ended_runs, agent_runs, signals)
    return moved


def _end_batch(items: list[tuple]) -> tuple[list[bool], list[dict], list[tuple], dict]:
    """The batch's end (one round trip): whether each run moved, and what ``_after_commit`` takes
    once it committed (the ended runs are listed at the commit)."""
    ended_runs: list[dict] = []
    with terminal_hooks_batched(later=ended_runs), listener_reads_shared():
        organizations = sorted({ctx.execution.organization_id for ctx, _ in items}, key=organization_lock_key)
        own = connection.in_atomic_block or any(
            listeners_want({"execution.completed"}, organization_id=organization) for organization in organizations
        )
        batches = LastBatches([ctx.recorder for ctx, _ in items])
        try:
            with transaction.atomic(savepoint=False) if own else nullcontext():
                moved = _send(items, batches, organizations)
        except Exception:
            if own or not batches.sent:  # rolled back: each run's last batch goes with its own end instead
                batches.put_back()
            raise
    agent_runs = [(ctx.execution, ctx.elapsed(), "") for ctx, _ in items]
    signals = {str(ctx.execution.pk): _end_fields(result) for ctx, result in items}
    return [str(ctx.execution.pk) in moved for ctx, _ in items], ended_runs, agent_runs, signals


def _end_fields(result) -> dict:
    """The fields a completed run's end writes (and its end's signal carries)."""
    return {"result": result, "error": ""}


def _send(items: list[tuple], batches: LastBatches, organizations: list) -> set[str]:
    """The round trip: the last batches' statements, then one transition statement per
    organization (in lock-key order); then each moved run's event published."""
    statements, writing = batches.statements()
    runs: dict = {organization: [] for organization in organizations}
    for ctx, result in items:
        runs[ctx.execution.organization_id].append((ctx.execution.pk, "completed", _end_fields(result)))
    transitions = [transition_many_statement(to=S.COMPLETED, runs=runs[o]) for o in organizations]
    sql = ";\n".join(statement for statement, _ in statements + transitions)
    params = [param for _, statement_params in statements + transitions for param in statement_params]
    written: set[str] = set()
    fetched: list[list] = []
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        batches.sent = True  # in autocommit: committed by the server
        for index in range(len(statements) + len(transitions)):
            if index:
                cursor.nextset()
            if index < writing:
                written |= {str(row[0]) for row in cursor.fetchall()}
            elif index >= len(statements):
                fetched.append(cursor.fetchall())
    batches.settle(written)
    moved: set[str] = set()
    for organization, rows in zip(organizations, fetched):
        moved |= transition_many_published(organization_id=organization, to=S.COMPLETED, fetched=rows)
    return moved


def _after_commit(ended_runs: list[dict], agent_runs: list[tuple], signals: dict, *, signalled: bool = False) -> None:
    """What follows a committed batch of ends: the waiters signalled (in one Redis round trip,
    unless ``signalled`` already), the terminal hooks called, the agents' run counters written."""
    if not signalled:
        signal_ended(ended_runs, signals)
    if ended_runs:
        plugins.run_terminal_hooks(ended_runs)
    record_agent_runs(agent_runs)


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


def _handle(items: list[tuple]) -> list[tuple]:
    """The batcher's handler: the batch's waiters signalled once it committed (one Redis round
    trip), then each caller gets whether its run moved and what is left to do (the first caller:
    the terminal hooks and the agents' counters): the batch's thread takes the next batch meanwhile.
    Inside the caller's transaction (a lone run), all of it waits for that to commit."""
    moved, ended_runs, agent_runs, signals = _end_batch(items)
    signalled = not connection.in_atomic_block
    if signalled:
        signal_ended(ended_runs, signals)
    after = partial(_after_commit, ended_runs, agent_runs, signals, signalled=signalled)
    return [(moved[0], after)] + [(ended, _nothing) for ended in moved[1:]]


def _nothing() -> None:
    """What a caller of a batch other than its first has left to do once it committed."""


completer = Batcher("kai-run-completion", _handle)


def complete(ctx, result) -> bool:
    """End a run COMPLETED with its result and its last batch, batched with the runs ending now;
    its waiters are signalled by this thread once that committed, and the batch's terminal hooks
    and agents' counters by the thread of its first run, after the batch's callers were let go."""
    moved, after = completer.submit((ctx, result))
    if connection.in_atomic_block:  # ended inside the caller's transaction: once that commits
        transaction.on_commit(after)
    else:
        after()
    return moved
