"""The run's steps and their latest attempts, as the engine reasons about them: which are live,
which count as done for their dependents, and the context conditions and templates are rendered in."""

from __future__ import annotations

import json

from apps.runs.models import ExecutionStatus
from apps.workflows.models import FAILED_STEP_STATES, LIVE_STEP_STATES, StepRun, StepState, WorkflowRun

S = ExecutionStatus


def step_status(step_run: StepRun | None) -> str:
    """The status a step shows in the API and in events (PENDING before its first attempt)."""
    if step_run is None:
        return "PENDING"
    if (
        step_run.state == StepState.ACTIVE
        and step_run.execution_id
        and step_run.execution is not None
        and step_run.execution.status == S.WAITING_FOR_APPROVAL
    ):
        return str(S.WAITING_FOR_APPROVAL)
    shown: dict[str, str] = {StepState.SCHEDULED: "SCHEDULED", StepState.ACTIVE: "RUNNING"}
    return shown.get(step_run.state, step_run.state.upper())


def _json_or_none(value):
    if isinstance(value, (dict, list)):
        return value
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            return None
    return None


class Dag:
    """The run's steps and their attempts, as the engine reasons about them."""

    def __init__(self, run: WorkflowRun, definition: dict, step_runs: list[StepRun]):
        self.run = run
        self.definition = definition
        self.main = definition["steps"]
        self.fallback = definition["error_handling"].get("fallback_steps") or []
        self.strategy = definition["error_handling"].get("strategy") or "fail_fast"
        self.policy = definition.get("retry_policy") or {}
        self.max_attempts = int(self.policy.get("max_attempts") or 1)
        self.latest: dict[tuple[bool, str], StepRun] = {}
        #: events published at the end of the advance: taking the organization's event lock only after
        #: every execution row this advance locks keeps the lock order of the run engine (row, then events)
        self.events: list[tuple[str, dict, str]] = []
        for step_run in step_runs:
            key = (step_run.fallback, step_run.step_id)
            if key not in self.latest or step_run.attempt >= self.latest[key].attempt:
                self.latest[key] = step_run

    def latest_of(self, step: dict, fallback: bool) -> StepRun | None:
        return self.latest.get((fallback, step["id"]))

    def live(self) -> list[StepRun]:
        return [sr for sr in self.latest.values() if sr.state in LIVE_STEP_STATES]

    def done(self, step_run: StepRun | None) -> bool:
        """Counts as finished for its dependents."""
        if step_run is None:
            return False
        if step_run.state in (StepState.COMPLETED, StepState.SKIPPED):
            return True
        return step_run.state in FAILED_STEP_STATES and self.strategy == "continue" and not step_run.fallback

    def context(self) -> dict:
        steps = {}
        for (fallback, step_id), sr in self.latest.items():
            steps[step_id] = {
                "status": step_status(sr),
                "output": sr.output,
                "result": sr.output,
                "json": _json_or_none(sr.output),
                "error": sr.error or None,
                "attempts": sr.attempt,
                "skipped": sr.state == StepState.SKIPPED,
                "failed": sr.state in FAILED_STEP_STATES,
                "completed": sr.state == StepState.COMPLETED,
                "fallback": fallback,
            }
        return {
            "inputs": self.run.inputs or {},
            "steps": steps,
            "trigger": {
                "type": self.run.trigger_type,
                "source": self.run.trigger_source,
                "data": self.run.trigger_data or {},
            },
        }


def find_step(dag: Dag, step_run: StepRun) -> dict | None:
    """The definition of the step an attempt belongs to (main or fallback)."""
    steps = dag.fallback if step_run.fallback else dag.main
    return next((s for s in steps if s["id"] == step_run.step_id), None)
