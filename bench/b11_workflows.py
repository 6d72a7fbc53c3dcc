"""B11 (workflows): time from ``execute`` to COMPLETED of a 10-step linear and a 10-wide parallel
workflow on one real Celery worker with the builtin provider, beside the same number of bare
Celery no-op tasks chained (linear) or grouped (parallel) on the same worker in the same run.

    DATABASE_URL=… REDIS_URL=… .venv/bin/python bench/b11_workflows.py [--repeats 5] [--concurrency 16]

Every workflow step is a full run-engine execution (PENDING → PREPARING → RUNNING → COMPLETED with
events, audit, logs, an llm span, usage) plus one ``workflows.advance`` task per step end; a
bare task is one queue → worker → ack hop. The ratio says how many times slower the workflow is
than the bare tasks (lower is better); per-step overhead is printed beside it.

``run(ctx)`` is the entry point of ``python -m bench`` (it runs the measurement in a child process
through bench/child.py, which calls ``run`` again with plain attributes).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kai_platform.settings")

DEFAULTS = {"repeats": 5, "concurrency": 16, "steps": 10}
MEASURES = "workflow execute → COMPLETED, 10 linear / 10 parallel steps"
TARGET = "report (vs bare Celery chain/group)"


def _measure_workflow(workflow, timeout: float = 120.0) -> float:
    from apps.runs.services import wait_for_terminal
    from apps.workflows.services import workflow_start

    started = time.perf_counter()
    run = workflow_start(workflow=workflow, actor=None, inputs={"bench": True})
    execution = wait_for_terminal(execution_id=run.execution_id, timeout=timeout)
    elapsed = time.perf_counter() - started
    if execution.status != "COMPLETED":
        raise RuntimeError(f"B11 run {run.pk} ended {execution.status}: {execution.error}")
    return elapsed


def _measure_bare(steps: int, linear: bool) -> float:
    from celery import chain, group
    from django.conf import settings
    from django_redis import get_redis_connection

    from apps.runs.tasks import noop

    redis = get_redis_connection("default")
    key = f"{settings.KAI_REDIS_PREFIX}:bench:b11:{uuid.uuid4().hex}"
    signatures = [noop.si(key).set(queue=settings.CELERY_TASK_DEFAULT_QUEUE) for _ in range(steps)]
    started = time.perf_counter()
    (chain(*signatures) if linear else group(*signatures)).apply_async()
    while int(redis.get(key) or 0) < steps:
        time.sleep(0.0005)
    elapsed = time.perf_counter() - started
    redis.delete(key)
    return elapsed


def measure(opts: dict) -> dict:
    import django

    django.setup()
    from django.db import connection

    from apps.accounts.models import Membership, Organization, User
    from apps.agents.services import agent_create
    from apps.workflows.services import workflow_create
    from bench.b4_runs import _start_workers, _stop_workers

    suffix = uuid.uuid4().hex[:8]
    steps = opts["steps"]
    organization = Organization.objects.create(
        name=f"bench-b11-{suffix}",
        slug=f"bench-b11-{suffix}",
        plan="enterprise",
        settings={"max_concurrent_runs": 100000},
    )
    user = User.objects.create_user(email=f"bench-b11-{suffix}@example.com", password=uuid.uuid4().hex)
    Membership.objects.create(user=user, organization=organization, role="owner")
    agent = agent_create(
        organization=organization, actor=user, data={"name": "B11", "role": "Echo", "goal": "Echo", "llm": "builtin"}
    )

    def step(index, depends_on=()):
        return {
            "id": f"s{index}",
            "agent_number": agent.agent_number,
            "action": f"step {index}",
            "parameters": {},
            "depends_on": list(depends_on),
        }

    linear, _ = workflow_create(
        organization=organization,
        actor=user,
        data={
            "name": "B11 linear",
            "definition": {"steps": [step(i, [f"s{i - 1}"] if i else []) for i in range(steps)]},
        },
    )
    parallel, _ = workflow_create(
        organization=organization,
        actor=user,
        data={"name": "B11 parallel", "definition": {"steps": [step(i) for i in range(steps)]}},
    )
    workers = _start_workers(1, opts["concurrency"], f"b11{suffix}")
    connection.close()
    try:
        _measure_workflow(linear)  # warm-up: code paths, pools, worker threads
        _measure_workflow(parallel)
        _measure_bare(steps, True)
        samples = {"linear": [], "parallel": [], "bare_chain": [], "bare_group": []}
        for _ in range(opts["repeats"]):
            samples["linear"].append(_measure_workflow(linear))
            samples["bare_chain"].append(_measure_bare(steps, True))
            samples["parallel"].append(_measure_workflow(parallel))
            samples["bare_group"].append(_measure_bare(steps, False))
        ms = {name: round(statistics.median(values) * 1000, 1) for name, values in samples.items()}
        result = {
            "steps": steps,
            "repeats": opts["repeats"],
            "concurrency": opts["concurrency"],
            "linear_ms": ms["linear"],
            "parallel_ms": ms["parallel"],
            "bare_chain_ms": ms["bare_chain"],
            "bare_group_ms": ms["bare_group"],
            "linear_ratio": round(ms["linear"] / ms["bare_chain"], 1),
            "parallel_ratio": round(ms["parallel"] / ms["bare_group"], 1),
            "linear_per_step_ms": round(ms["linear"] / steps, 1),
        }
        print(
            f"B11 workflows: execute → COMPLETED, median of {opts['repeats']}, 1 worker x "
            f"{opts['concurrency']} threads, builtin provider"
        )
        print(
            f"  {steps}-step linear     : {ms['linear']:8.1f} ms  ({result['linear_per_step_ms']} ms/step)   "
            f"bare Celery chain of {steps}: {ms['bare_chain']:7.1f} ms   ratio {result['linear_ratio']}x"
        )
        print(
            f"  {steps}-wide parallel   : {ms['parallel']:8.1f} ms   "
            f"bare Celery group of {steps}: {ms['bare_group']:7.1f} ms   ratio {result['parallel_ratio']}x"
        )
        return result
    finally:
        _stop_workers(workers)
        Organization.objects.filter(pk=organization.pk).delete()
        user.delete()


def run(ctx=None):
    if hasattr(ctx, "run_python"):  # called by the runner: measure in a child, answer table rows
        from bench import child
        from bench.common import log
        from bench.results import Row, verdict

        attributes = {"repeats": 2 if ctx.quick else DEFAULTS["repeats"], "db_name": ctx.db_name}
        log(f"B11: bench/b11_workflows.py run(ctx={attributes})")
        data = child.call(ctx, "b11_workflows", attributes)
        return [
            Row(
                id="B11",
                measures=MEASURES,
                target=TARGET,
                figure=data["linear_ms"],
                figure_text=f"linear {data['linear_ms']:.0f} ms, parallel {data['parallel_ms']:.0f} ms",
                baseline=data["bare_chain_ms"],
                baseline_text=f"chain {data['bare_chain_ms']:.0f} ms, group {data['bare_group_ms']:.0f} ms",
                ratio=data["linear_ratio"],
                ratio_text=f"{data['linear_ratio']}x / {data['parallel_ratio']}x",
                status=verdict(True),
                note=f"{data['steps']} steps, median of {data['repeats']}; {data['linear_per_step_ms']} ms per linear step",
                details=data,
            )
        ], []
    opts = {key: int(getattr(ctx, key, None) or value) for key, value in DEFAULTS.items()}
    return measure(opts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for key, value in DEFAULTS.items():
        parser.add_argument(f"--{key}", type=int, default=value)
    args = parser.parse_args()
    measure(vars(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
