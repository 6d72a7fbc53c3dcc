"""Durable steps: every completed model call, tool call and task of a checkpointed run is written
to its step log (``ExecutionStep``) when it completes, in the transaction that records what it
spent. A run resumed on another worker (its worker was lost) or replayed answers those steps from
the log instead of calling the provider or the tool again.

A step's key is ``kind:hash(task, request):occurrence`` — the hash of the task it belongs to and
what was asked (model, messages, tools, parameters; a tool's name and arguments; a task's name,
agent and prompt) and how many times that task asked the same thing before. Calls within a task
are sequential, so a rerun finds the same keys whichever order concurrent tasks reach them in,
and a task answered whole from the log shifts no other task's occurrences (a side-effecting tool
called with the same arguments by two tasks is not taken for done in the second).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter

from django.db import connection, transaction
from django.utils import timezone

from apps.runs.models import TERMINAL_STATUSES, Execution, ExecutionKind, ExecutionStep

#: kinds whose runs checkpoint their steps and get recovery attempts when their worker is lost
CHECKPOINTED_KINDS = frozenset({ExecutionKind.CREW, ExecutionKind.ORCHESTRATION})
CHECKPOINTED_MAX_ATTEMPTS = 3


def default_max_attempts(kind: str) -> int:
    """How many times a run of ``kind`` is tried when its worker is lost (a caller may say otherwise)."""
    return CHECKPOINTED_MAX_ATTEMPTS if kind in CHECKPOINTED_KINDS else 1


def checkpointed(execution: Execution) -> bool:
    return execution.kind in CHECKPOINTED_KINDS or execution.max_attempts > 1 or execution.replayed_from_id is not None


def request_hash(payload) -> str:
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:40]


class StepLog:
    """The step log of one run as its runner sees it: answers from earlier attempts (or from the
    run it replays), keys for new steps, and the write of a completed one."""

    def __init__(self, execution: Execution):
        self.execution_id = execution.pk
        self.organization_id = execution.organization_id
        self.enabled = checkpointed(execution)
        # a first attempt of a new run has nothing to answer from: no query
        self._load = self.enabled and (execution.attempts > 0 or execution.replayed_from_id is not None)
        self._answers: dict[str, dict] | None = None
        self._seen: Counter = Counter()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._step_order: dict[str, int] = {}
        self.answered = 0  # steps this attempt took from the log

    # --- which step of the run a call belongs to (set by the task around it, per thread) ---------
    def enter(self, name: str) -> str | None:
        with self._lock:
            self._step_order.setdefault(name, len(self._step_order))
        previous = getattr(self._local, "step", None)
        self._local.step = name
        return previous

    def leave(self, previous: str | None) -> None:
        self._local.step = previous

    def current(self) -> tuple[str, int]:
        name = getattr(self._local, "step", None) or ""
        with self._lock:
            return name, self._step_order.get(name, 0)

    # --- keys, answers, writes ------------------------------------------------------------
    def key(self, kind: str, payload) -> str | None:
        """The key of the next ``kind`` step asking ``payload`` in the current step (task)."""
        if not self.enabled:
            return None
        step = getattr(self._local, "step", None) or ""
        digest = request_hash({"step": step, "request": payload})
        with self._lock:
            occurrence = self._seen[(kind, digest)]
            self._seen[(kind, digest)] += 1
        return f"{kind}:{digest}:{occurrence}"

    def answer(self, key: str | None) -> dict | None:
        if key is None or not self._load:
            return None
        with self._lock:
            if self._answers is None:
                self._answers = dict(
                    ExecutionStep.objects.filter(execution_id=self.execution_id).values_list("key", "response")
                )
                if not connection.in_atomic_block:
                    connection.close()
            found = self._answers.get(key)
            if found is not None:
                self.answered += 1
            return found

    def record(self, key: str | None, kind: str, response: dict, recorder) -> None:
        """Write a completed step with the recorder's batch (what it spent) in one transaction: a
        step in the log is a step whose cost the run has counted."""
        if key is None:
            return
        step, index = self.current()
        try:
            with transaction.atomic():
                if recorder.flush():
                    ExecutionStep.objects.bulk_create(
                        [
                            ExecutionStep(
                                organization_id=self.organization_id,
                                execution_id=self.execution_id,
                                key=key,
                                kind=kind,
                                step=step[:300],
                                step_index=index,
                                response=response,
                                created_at=timezone.now(),
                            )
                        ],
                        ignore_conflicts=True,
                    )
        finally:
            if not connection.in_atomic_block:
                connection.close()


# --- replay ------------------------------------------------------------------------------------


class ReplayError(Exception):
    """A replay that cannot start: ``field`` and ``valid`` say what the caller can give instead."""

    def __init__(
        self, message: str, *, field: str = "from_step", valid: list[str] | None = None, conflict: bool = False
    ):
        super().__init__(message)
        self.field, self.valid, self.conflict = field, valid or [], conflict


def recorded_steps(execution: Execution) -> list[str]:
    """The steps (tasks) of a run in the order it started them."""
    rows = (
        ExecutionStep.objects.filter(execution_id=execution.pk)
        .exclude(step="")
        .values_list("step", "step_index")
        .order_by("step_index", "id")
    )
    return list(dict.fromkeys(step for step, _ in rows))


def replay_plan(execution: Execution, from_step: str) -> list[ExecutionStep]:
    """The step-log rows of ``execution`` a replay from ``from_step`` reuses (those of the steps
    it started before it); raises ReplayError naming the valid steps."""
    if execution.status not in TERMINAL_STATUSES:
        raise ReplayError(
            f"The execution has not ended ({execution.status}); only an ended run is replayed.",
            field="status",
            conflict=True,
        )
    steps = recorded_steps(execution)
    if not steps:
        raise ReplayError("The execution has no recorded steps to replay (only checkpointed runs record them).")
    if from_step not in steps:
        raise ReplayError(
            f"from_step {from_step!r} is not a step of this run; valid steps: {', '.join(steps)}.", valid=steps
        )
    first = (
        ExecutionStep.objects.filter(execution_id=execution.pk, step=from_step)
        .order_by("step_index")
        .values_list("step_index", flat=True)
        .first()
    )
    return list(
        ExecutionStep.objects.filter(execution_id=execution.pk, step_index__lt=first).exclude(step="").order_by("id")
    )


def copy_steps(rows: list[ExecutionStep], *, to: Execution) -> int:
    ExecutionStep.objects.bulk_create(
        [
            ExecutionStep(
                organization_id=to.organization_id,
                execution_id=to.pk,
                key=row.key,
                kind=row.kind,
                step=row.step,
                step_index=row.step_index,
                response=row.response,
                created_at=row.created_at,
            )
            for row in rows
        ],
        ignore_conflicts=True,
    )
    return len(rows)
