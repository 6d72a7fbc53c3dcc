"""B14 by stage: where the time of one ``POST deployments/{id}/invoke`` goes (not a bench row).

    DATABASE_URL=… REDIS_URL=… KAI_DB_NAME=<migrated db> .venv/bin/python -m bench.b14_stages [--calls 40]

Runs B14's sequential invokes (``bench/b14_invoke.py``'s tenant, deployment and runs worker as
``make run`` starts it) with both processes traced: every SQL statement, Redis command and a few
engine steps are stamped (``time.time()``, one run in flight at a time, so one timeline) into
``bench/results/logs/b14-stages-{web,worker}.tsv``. Prints each stage's p50 over the calls, and the
statements and Redis commands per call of each process. The tracing costs time of its own: compare
stages and counts between trees, not its totals with B14's.
"""

from __future__ import annotations

import functools
import os
import statistics
import sys
import threading
import time

from bench.b13_inflight import BASE_DIR, _setup_django, _stop, drop_tenant, make_tenant
from bench.b13_inflight import main as b13_main

DEFAULTS = {"calls": 40}
LOGS = BASE_DIR / "bench" / "results" / "logs"
PROMPT = "Summarise the state of the run engine in one line."

#: (stage, from mark, to mark): a mark is (process, label) of the first line after the call began
STAGES = [
    ("request -> run create begins", ("A", "> REQUEST"), ("A", "> agent_call_start")),
    ("create: rows, event, commit, publish", ("A", "> agent_call_start"), ("A", "< celery.apply_async")),
    ("Celery hop to the worker thread", ("A", "< celery.apply_async"), ("W", "> lifecycle.run")),
    ("intake: read + claim", ("W", "> lifecycle.run"), ("W", "< intake.take")),
    ("runner (the model)", ("W", "< intake.take"), ("W", "< runner")),
    ("end: flush .. COMMIT", ("W", "< runner"), ("W", "> signal_finished")),
    ("signal -> web woken", ("W", "> signal_finished"), ("A", "< REDIS BLMOVE")),
    ("woken -> response", ("A", "< REDIS BLMOVE"), ("A", "< REQUEST")),
    ("(publish -> wait begins, beside)", ("A", "< celery.apply_async"), ("A", "> wait_for_terminal")),
]


class Tracer:
    def __init__(self, role: str, path):
        self.role, self.out, self.lock = role, open(path, "a"), threading.Lock()

    def mark(self, label: str) -> None:
        line = f"{time.time():.6f}\t{self.role}\t{' '.join(str(label).split())[:120]}\n"
        with self.lock:
            self.out.write(line)
            self.out.flush()

    def wrap(self, owner, name: str, label=None) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def traced(*args, **kwargs):
            text = label(args, kwargs) if callable(label) else (label or name)
            self.mark(f"> {text}")
            try:
                return original(*args, **kwargs)
            finally:
                self.mark(f"< {text}")

        setattr(owner, name, traced)

    def install_io(self) -> None:
        import redis.client
        from celery.app import task
        from django.db.backends import utils
        from django.db.backends.base import base

        self.wrap(utils.CursorWrapper, "execute", lambda a, k: f"SQL {a[1] if len(a) > 1 else k.get('sql')}")
        self.wrap(redis.client.Redis, "execute_command", lambda a, k: "REDIS " + " ".join(map(str, a[1:3])))
        self.wrap(
            redis.client.Pipeline, "execute", lambda a, k: "REDIS PIPE " + ",".join(c[0][0] for c in a[0].command_stack)
        )
        self.wrap(base.BaseDatabaseWrapper, "_commit", "COMMIT")
        self.wrap(task.Task, "apply_async", "celery.apply_async")


def _install_worker(tracer: Tracer) -> None:
    import kombu.transport.redis

    from apps.runs import completion, intake, lifecycle, transitions
    from apps.runs import registry as plugins

    tracer.install_io()
    tracer.wrap(lifecycle, "run", "lifecycle.run")
    tracer.wrap(intake.intake, "take", "intake.take")
    tracer.wrap(lifecycle, "complete", "complete")
    tracer.wrap(completion, "record_agent_runs", "record_agent_runs")
    tracer.wrap(transitions, "_signal_many", "signal_finished")  # every end signal goes through it
    tracer.wrap(kombu.transport.redis.Channel, "_brpop_read", "kombu.brpop_read")
    runner_for = plugins.runner_for

    def traced_runner_for(kind):
        runner = runner_for(kind)
        if runner is None:
            return None

        def traced(ctx):
            tracer.mark("> runner")
            try:
                return runner(ctx)
            finally:
                tracer.mark("< runner")

        return traced

    lifecycle.plugins.runner_for = traced_runner_for  # type: ignore[attr-defined]


def worker_main(argv: list[str]) -> int:
    """The runs worker, traced: ``python -m bench.b14_stages --worker <celery worker args>``."""
    _setup_django()
    _install_worker(Tracer("W", LOGS / "b14-stages-worker.tsv"))
    from celery.__main__ import main as celery_main

    sys.argv = ["celery", *argv]
    return celery_main()


def _start_traced_worker():
    """``make run``'s runs worker command, its ``-m celery`` replaced by this module's ``--worker``."""
    from bench import b13_inflight
    from kai_platform import cli

    original = cli.runs_worker_command
    command = original()
    index = command.index("-m")
    traced = [*command[:index], "-m", "bench.b14_stages", "--worker", *command[index + 2 :]]
    cli.runs_worker_command = lambda extra=None: traced  # type: ignore[assignment]
    try:
        return b13_inflight._start_runs_worker()
    finally:
        cli.runs_worker_command = original  # type: ignore[assignment]


def _calls(lines: list[tuple[float, str, str]]) -> list[list]:
    calls, current = [], None
    for line in lines:
        if line[2] == "> REQUEST":
            current = [line]
        elif current is not None:
            current.append(line)
            if line[2] == "< REQUEST":
                calls.append(current)
                current = None
    return calls


def report(lines: list[tuple[float, str, str]]) -> dict:
    """Each stage's p50 (ms) over the calls, and the statements / Redis commands per call."""
    figures: dict[str, list[float]] = {}
    for call in _calls(sorted(lines)):
        marks: dict[tuple[str, str], float] = {}
        for at, role, label in call:
            marks.setdefault((role, label), at)
            if label.startswith("< REDIS BLMOVE"):
                marks.setdefault((role, "< REDIS BLMOVE"), at)
        for name, start, end in STAGES:
            if start in marks and end in marks:
                figures.setdefault(name, []).append((marks[end] - marks[start]) * 1000)
        figures.setdefault("total", []).append((call[-1][0] - call[0][0]) * 1000)
        for role, process in (("A", "web"), ("W", "worker")):
            for kind in ("SQL", "REDIS"):
                count = sum(1 for _, r, label in call if r == role and label.startswith(f"> {kind}"))
                figures.setdefault(f"{kind} per call, {process}", []).append(count)
    return {name: round(statistics.median(values), 2) for name, values in figures.items()}


def run(ctx=None) -> dict:
    calls = int(getattr(ctx, "calls", None) or DEFAULTS["calls"])
    LOGS.mkdir(parents=True, exist_ok=True)
    _setup_django()
    from django.db import connection
    from rest_framework.test import APIClient

    from apps.agents import calls as agent_calls
    from apps.agents.services import deployment_create, deployments

    for name in ("web", "worker"):
        (LOGS / f"b14-stages-{name}.tsv").write_text("")
    tracer = Tracer("A", LOGS / "b14-stages-web.tsv")
    organization, user, agent = make_tenant("b14s")
    deployment, key = deployment_create(
        organization=organization, actor=user, agent=agent, name="b14s", channels=["api"]
    )
    worker, _env, _name = _start_traced_worker()
    connection.close()
    try:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        url = f"/api/v1/deployments/{deployment.pk}/invoke"
        for _ in range(5):  # warm-up, untraced
            assert client.post(url, {"prompt": PROMPT}, format="json").status_code == 200
        tracer.install_io()
        tracer.wrap(agent_calls, "agent_call_start")
        tracer.wrap(agent_calls, "wait_for_terminal")
        tracer.wrap(deployments, "deployment_authenticate")
        for _ in range(calls):
            tracer.mark("> REQUEST")
            response = client.post(url, {"prompt": PROMPT}, format="json")
            tracer.mark("< REQUEST")
            assert response.status_code == 200, response.content[:300]
            connection.close()
    finally:
        _stop(worker)
        drop_tenant(organization, user)
    lines = []
    for name in ("web", "worker"):
        for line in open(LOGS / f"b14-stages-{name}.tsv"):
            at, role, label = line.rstrip("\n").split("\t", 2)
            lines.append((float(at), role, label))
    result = report(lines)
    print(f"B14 by stage, {calls} traced sequential invokes (p50, ms; 1-min load {os.getloadavg()[0]:.1f})")
    for name, value in result.items():
        print(f"  {name:40s} {value}")
    return result


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        raise SystemExit(worker_main(sys.argv[2:]))
    raise SystemExit(b13_main(doc=__doc__, defaults=DEFAULTS, entry=run))
