"""B4: runs created over the API reaching COMPLETED per second with N real Celery workers, beside
bare Celery no-op tasks per second on the same workers in the same run; and the API-accept →
RUNNING latency of each run (p50/p95).

    DATABASE_URL=… REDIS_URL=… .venv/bin/python bench/b4_runs.py [--workers 2] [--concurrency 32]
                                                                 [--runs 400] [--noops 2000] [--clients 8]
                                                                 [--batch 50]

A run here is the smallest real one: ``POST /api/v1/executions`` for one agent with the builtin
provider (no latency), which goes PENDING → PREPARING → RUNNING → COMPLETED through the transition
service (events, audit, logs, one llm span, usage) on a worker. The no-op baseline is a Celery task
that increments a Redis counter. Targets: runs/s ≥ 0.3 × no-op tasks/s, p50 accept → RUNNING < 50 ms.

``run(ctx) -> dict`` is the entry point of ``python -m bench``; ``ctx`` attributes ``workers``,
``concurrency``, ``runs``, ``noops``, ``clients``, ``latency_samples`` override the defaults when present.
The latency target is measured on idle workers (one run at a time); the latency while the burst
saturates the workers is printed beside it (that one is queueing time).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kai_platform.settings")

#: 8 threads per worker saturate 2 cores; more only hold more PostgreSQL connections on a shared server
#: ``batch`` > 1: the burst is created through POST /api/v1/executions/batch, that many runs a request
DEFAULTS = {"workers": 2, "concurrency": 8, "runs": 400, "noops": 2000, "clients": 8, "latency_samples": 50, "batch": 0}


def _setup_django():
    import django
    from django.apps import apps

    if not apps.ready:
        django.setup()


def _start_workers(count: int, concurrency: int, suffix: str) -> list[subprocess.Popen]:
    from django.conf import settings
    from django.db import connection

    env = os.environ.copy()
    env.update(
        KAI_REDIS_PREFIX=settings.KAI_REDIS_PREFIX,
        KAI_DB_NAME=connection.settings_dict["NAME"],
        PYTHONPATH=str(BASE_DIR),
        KAI_DB_POOL_MAX=str(concurrency + 2),
    )
    env.pop("PYTEST_XDIST_WORKER", None)
    queues = f"{settings.KAI_RUNS_QUEUE},{settings.CELERY_TASK_DEFAULT_QUEUE}"
    processes = []
    for index in range(count):
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "kai_platform",
                    "worker",
                    "--loglevel",
                    "WARNING",
                    "--pool",
                    "threads",
                    "--concurrency",
                    str(concurrency),
                    "--without-mingle",
                    "--without-gossip",
                    "-Q",
                    queues,
                    "-n",
                    f"b4-{suffix}-{index}@%h",
                ],
                cwd=BASE_DIR,
                env=env,
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    from django_redis import get_redis_connection

    redis = get_redis_connection("default")
    deadline = time.monotonic() + 180  # a loaded 2-core host takes over a minute to import Django twice
    while time.monotonic() < deadline:
        alive = [k for k in redis.scan_iter(f"{settings.KAI_REDIS_PREFIX}:workers:b4-{suffix}-*")]
        if len(alive) >= count:
            return processes
        if any(p.poll() is not None for p in processes):
            break
        time.sleep(0.2)
    _stop_workers(processes)
    raise RuntimeError("B4 workers did not start")


def _stop_workers(processes) -> None:
    import signal

    for process in processes:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for process in processes:
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _bare_celery(noops: int) -> float:
    """No-op tasks per second through the same workers (queue → worker → ack)."""
    from django.conf import settings
    from django_redis import get_redis_connection

    from apps.runs.tasks import noop

    redis = get_redis_connection("default")
    key = f"{settings.KAI_REDIS_PREFIX}:bench:b4:noop:{uuid.uuid4().hex}"
    started = time.perf_counter()
    for _ in range(noops):
        noop.apply_async(kwargs={"counter_key": key}, queue=settings.KAI_RUNS_QUEUE, priority=4)
    while int(redis.get(key) or 0) < noops:
        time.sleep(0.002)
    elapsed = time.perf_counter() - started
    redis.delete(key)
    return noops / elapsed


def _cpu_seconds(processes) -> float:
    """User + system CPU seconds the worker processes have used so far (the figure the host's load
    changes least)."""
    import psutil

    total = 0.0
    for process in processes:
        try:
            times = psutil.Process(process.pid).cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def _latencies(accepted) -> list[float]:
    """Milliseconds from the API's 202 to the run's RUNNING transition (``started_at``)."""
    from apps.runs.models import Execution

    started = dict(Execution.objects.filter(pk__in=[pk for pk, _ in accepted]).values_list("pk", "started_at"))
    return [(started[uuid.UUID(pk)].timestamp() - at) * 1000 for pk, at in accepted if started.get(uuid.UUID(pk))]


def _percentile(values, q):
    values = sorted(values)
    if not values:
        return float("nan")
    index = min(len(values) - 1, max(0, int(round(q * (len(values) - 1)))))
    return values[index]


def run(ctx=None) -> dict:
    opts = {key: int(getattr(ctx, key, None) or value) for key, value in DEFAULTS.items()}
    _setup_django()
    from django.db import connection
    from rest_framework.test import APIClient

    from apps.accounts.models import Membership, Organization, User
    from apps.accounts.services import auth_issue_tokens
    from apps.agents.services import agent_create
    from apps.runs.models import Execution
    from kai_platform.api import ratelimit

    ratelimit.PLAN_RATE_LIMITS["enterprise"] = (10**9, 10**9)  # measure the engine, not the rate limiter
    suffix = uuid.uuid4().hex[:8]
    organization = Organization.objects.create(
        name=f"bench-b4-{suffix}",
        slug=f"bench-b4-{suffix}",
        plan="enterprise",
        settings={"max_concurrent_runs": 100000},
    )
    user = User.objects.create_user(email=f"bench-b4-{suffix}@example.com", password=uuid.uuid4().hex)
    Membership.objects.create(user=user, organization=organization, role="owner")
    agent = agent_create(
        organization=organization, actor=user, data={"name": "B4", "role": "Echo", "goal": "Echo", "llm": "builtin"}
    )
    token = auth_issue_tokens(user=user)["access_token"]
    workers = _start_workers(opts["workers"], opts["concurrency"], suffix)
    connection.close()
    try:
        body = {"agent_id": str(agent.pk), "description": "ping"}

        def create(count: int, out: list):
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
            if opts["batch"] > 1:  # POST /executions/batch: the fixed cost of a request shared by its items
                for start in range(0, count, opts["batch"]):
                    items = [body] * min(opts["batch"], count - start)
                    response = client.post("/api/v1/executions/batch", {"executions": items}, format="json")
                    accepted = time.time()
                    assert response.status_code == 200 and response.json()["failed"] == 0, response.content[:300]
                    out.extend((r["execution"]["execution_id"], accepted) for r in response.json()["results"])
                connection.close()
                return
            for _ in range(count):
                response = client.post("/api/v1/executions", body, format="json")
                accepted = time.time()
                assert response.status_code == 202, response.content[:300]
                out.append((response.json()["execution_id"], accepted))
            connection.close()

        def wait_completed(ids, timeout=600):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                done = Execution.objects.filter(pk__in=ids, status__in=["COMPLETED", "FAILED", "CANCELLED"]).count()
                if done >= len(ids):
                    return
                time.sleep(0.01)
            raise TimeoutError("B4 runs did not finish")

        warm: list = []
        create(20, warm)  # warm-up: code paths, pools, worker threads
        wait_completed([pk for pk, _ in warm])
        _bare_celery(200)

        cpu_before = _cpu_seconds(workers)
        noop_rate = _bare_celery(opts["noops"])
        noop_cpu = _cpu_seconds(workers) - cpu_before

        cpu_before = _cpu_seconds(workers)
        accepted: list = []
        per_client = opts["runs"] // opts["clients"]
        threads = [threading.Thread(target=create, args=(per_client, accepted)) for _ in range(opts["clients"])]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        api_seconds = time.perf_counter() - started
        ids = [pk for pk, _ in accepted]
        wait_completed(ids)
        total_seconds = time.perf_counter() - started
        run_cpu = _cpu_seconds(workers) - cpu_before
        statuses = list(Execution.objects.filter(pk__in=ids).values_list("status", flat=True))
        saturated = _latencies(accepted)
        run_rate = len(ids) / total_seconds

        # accept → RUNNING when the workers have room (one run at a time, a little apart)
        light: list = []
        for _ in range(opts["latency_samples"]):
            create(1, light)
            wait_completed([light[-1][0]])
            time.sleep(0.02)
        latencies = _latencies(light)
        result = {
            "batch": opts["batch"],
            "workers": opts["workers"],
            "concurrency": opts["concurrency"],
            "runs": len(ids),
            "completed": statuses.count("COMPLETED"),
            "runs_per_s": round(run_rate, 1),
            "api_accepts_per_s": round(len(ids) / api_seconds, 1),
            "noop_tasks_per_s": round(noop_rate, 1),
            "ratio": round(run_rate / noop_rate, 3),
            "worker_cpu_ms_per_run": round(run_cpu * 1000 / max(1, len(ids)), 2),
            "worker_cpu_ms_per_noop": round(noop_cpu * 1000 / max(1, opts["noops"]), 2),
            "accept_to_running_p50_ms": round(statistics.median(latencies), 1),
            "accept_to_running_p95_ms": round(_percentile(latencies, 0.95), 1),
            "saturated_accept_to_running_p50_ms": round(statistics.median(saturated), 1),
        }
        via = f"POST /executions/batch × {opts['batch']}" if opts["batch"] > 1 else "POST /executions"
        print(f"B4 runs over the API ({via}) → COMPLETED, {opts['workers']} workers × {opts['concurrency']} threads")
        print(f"  runs completed         : {result['completed']}/{result['runs']}")
        print(
            f"  runs/s (API → COMPLETED): {result['runs_per_s']:8.1f}   (API accepts/s {result['api_accepts_per_s']})"
        )
        print(f"  bare Celery no-op/s    : {result['noop_tasks_per_s']:8.1f}")
        print(f"  ratio runs / no-op     : {result['ratio']:8.3f}   (target >= 0.3)")
        print(
            f"  workers' CPU per run   : {result['worker_cpu_ms_per_run']:8.2f} ms   "
            f"(per no-op task {result['worker_cpu_ms_per_noop']} ms; user + system of both workers)"
        )
        print(
            f"  accept → RUNNING p50   : {result['accept_to_running_p50_ms']:8.1f} ms   "
            f"p95 {result['accept_to_running_p95_ms']} ms   (target p50 < 50 ms; "
            f"{opts['latency_samples']} runs, workers idle)"
        )
        print(
            f"  … while saturated, p50 : {result['saturated_accept_to_running_p50_ms']:8.1f} ms   (queueing behind "
            f"the burst)"
        )
        return result
    finally:
        _stop_workers(workers)
        Organization.objects.filter(pk=organization.pk).delete()
        user.delete()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for key, value in DEFAULTS.items():
        parser.add_argument(f"--{key}", type=int, default=value)
    args = parser.parse_args()
    run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
