"""How a runs worker ends its completed runs: the runs whose runner returned within a few
milliseconds of each other are ended in one transaction — their last batches in one UPDATE and
one insert per table (``RunRecorder.flush_many``), then each run's ``execution_transition`` to
COMPLETED (its history row, its event, its hooks), the organization's event lock taken once.
A batch that fails leaves each run to end alone, the way ``apps.runs.lifecycle`` always could."""

from __future__ import annotations

from django.db import transaction

from apps.runs.batching import Batcher
from apps.runs.models import ExecutionStatus
from apps.runs.recorder import RunRecorder
from apps.runs.services import execution_transition

S = ExecutionStatus


def _complete_batch(items: list[tuple]) -> list[bool]:
    """(RunContext, result) → whether the run was moved to COMPLETED (False: it had ended elsewhere)."""
    taken: list = []
    try:
        with transaction.atomic():
            taken = RunRecorder.flush_many([ctx.recorder for ctx, _ in items])
            return [
                execution_transition(
                    execution_id=ctx.execution.pk, to=S.COMPLETED, reason="completed", result=result, error=""
                )
                for ctx, result in items
            ]
    except Exception:
        RunRecorder.put_back(taken)  # each run's last batch goes with its own end instead
        raise


completer = Batcher("kai-run-completion", _complete_batch)


def complete(ctx, result) -> bool:
    """End a run COMPLETED with its result and its last batch, batched with the runs ending now."""
    return completer.submit((ctx, result))
