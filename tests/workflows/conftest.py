"""Fixtures of the workflow tests: agents, workflows, and one real worker shared by a module."""

from __future__ import annotations

import time

import pytest

from tests.helpers import WorkerProcess


def make_agent(member, **data):
    from apps.agents.services import agent_create

    values = {"name": "Agent", "role": "Helper", "goal": "Help", "backstory": "Helpful."}
    values.update(data)
    return agent_create(organization=member.organization, actor=member.user, data=values)


def step(step_id, agent, *, depends_on=(), **extra) -> dict:
    body = {"id": step_id, "agent_number": agent.agent_number, "action": f"do {step_id}", "parameters": {"n": 1}}
    if depends_on:
        body["depends_on"] = list(depends_on)
    body.update(extra)
    return body


def definition(steps, **extra) -> dict:
    body = {
        "trigger": {"type": "manual", "conditions": {}},
        "steps": steps,
        "error_handling": {"strategy": "fail_fast", "notification_on_error": False},
        "retry_policy": {"max_attempts": 1, "backoff_strategy": "fixed", "delay_ms": 0},
    }
    body.update(extra)
    return body


def make_workflow(member, definition_: dict, name: str = "Flow"):
    from apps.workflows.services import workflow_create

    workflow, secret = workflow_create(
        organization=member.organization, actor=member.user, data={"name": name, "definition": definition_}
    )
    workflow.secret = secret
    return workflow


def wait_for(predicate, timeout: float, interval: float = 0.05, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


def wait_run(run_id, timeout: float = 30.0):
    """The run once its execution ended (with its step runs ordered)."""
    from apps.workflows.models import WorkflowRun

    def ended():
        run = WorkflowRun.objects.select_related("execution").get(pk=run_id)
        return run if run.execution.is_terminal else None

    return wait_for(ended, timeout, message=f"run {run_id} to end")


def steps_of(run):
    from apps.workflows.models import StepRun

    return list(StepRun.objects.filter(run=run).select_related("execution").order_by("created_at", "attempt"))


class SharedWorker:
    """The module's worker; a test may kill it and put another in its place (``replace``)."""

    def __init__(self, *args: str):
        self.args = args
        self.worker = WorkerProcess(*args)

    def replace(self, *args: str) -> WorkerProcess:
        self.worker = WorkerProcess(*args)
        return self.worker

    def stop(self) -> None:
        self.worker.stop()


@pytest.fixture(scope="module")
def wf_worker(django_db_setup, django_db_blocker):
    """One real Celery worker (threads pool, default + runs queues) for every test of a module."""
    with django_db_blocker.unblock():
        shared = SharedWorker("--concurrency", "8", "-n", "wf@%h")
    try:
        shared.worker.wait_alive(timeout=120)
        yield shared
    finally:
        shared.stop()
