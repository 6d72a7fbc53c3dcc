"""B13: runs in flight on one runs worker as ``make run`` starts it (its command, its defaults).

    DATABASE_URL=… REDIS_URL=… KAI_DB_NAME=<migrated db> .venv/bin/python bench/b13_inflight.py [--runs 2000]
                                                                                  [--seconds 20]
    .venv/bin/python -m bench B13          (the same, inside make bench's database)

N agent runs of the builtin model with ``latency_ms`` = seconds × 1000 (the model waits that long
before its first token) are created through ``POST /api/v1/executions/batch`` (500 a request), then
sampled every 0.25 s until every run ended: the most runs RUNNING at once, the worker's RSS over
its idle RSS per run in flight, and the worker's PostgreSQL connections (its TCP sockets to the
server) beside its pool's ``max_size``. The worker stops consuming while the runs are created and
takes them all once they are queued; wall is from then to the last run's end, ideal is
``seconds × ceil(N / concurrency)`` (every run waits its model once, in parallel).
Targets: max RUNNING ≥ 2,000, wall ≤ 1.1 × ideal, RSS ≤ 150 KB per run, connections ≤ the pool.

``run(ctx) -> dict`` is the entry point of ``python -m bench``; ``ctx.runs`` / ``ctx.seconds``
override the defaults.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kai_platform.settings")

DEFAULTS = {"runs": 2000, "seconds": 20}
BATCH = 500


def _setup_django():
    import django
    from django.apps import apps

    if not apps.ready:
        django.setup()


def _start_runs_worker() -> tuple[subprocess.Popen, dict, str]:
    """The runs worker exactly as ``make run``'s supervisor starts it (kai_platform.cli)."""
    from django.conf import settings
    from django.db import connection
    from django_redis import get_redis_connection

    from kai_platform.cli import runs_worker_command

    env = os.environ.copy()
    env.update(
        KAI_REDIS_PREFIX=settings.KAI_REDIS_PREFIX,
        KAI_DB_NAME=connection.settings_dict["NAME"],
        PYTHONPATH=str(BASE_DIR),
        KAI_LOG_LEVEL="WARNING",
    )
    env.pop("PYTEST_XDIST_WORKER", None)
    command = runs_worker_command()
    redis = get_redis_connection("default")
    pattern = f"{settings.KAI_REDIS_PREFIX}:workers:*"
    before = set(redis.scan_iter(pattern))
    log_dir = BASE_DIR / "bench" / "results" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / "b13-runs-worker.log", "wb") as log:
        process = subprocess.Popen(
            command, cwd=BASE_DIR, env=env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        started = set(redis.scan_iter(pattern)) - before
        if started:
            # the key is <node name>:<pid>; control commands address the node name
            return process, env, next(iter(started)).decode().split(":workers:", 1)[1].rsplit(":", 1)[0]
        if process.poll() is not None:
            raise RuntimeError(f"the runs worker exited with {process.returncode}")
        time.sleep(0.2)
    _stop(process)
    raise RuntimeError("the runs worker did not start")


def _stop(process) -> None:
    import signal

    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _pg_sockets(proc) -> int:
    """The worker's open TCP connections to the PostgreSQL port."""
    from django.db import connection

    port = int(connection.settings_dict.get("PORT") or 5432)
    try:
        return sum(1 for c in proc.net_connections(kind="inet") if c.raddr and c.raddr.port == port)
    except Exception:  # noqa: BLE001 - a unix-socket server: count its unix sockets instead
        return -1


class Sampler(threading.Thread):
    def __init__(self, pid: int, organization_id, interval: float = 0.25):
        import psutil

        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.organization_id = organization_id
        self.interval = interval
        self.stop_event = threading.Event()
        self.max_running = 0
        self.max_rss = 0
        self.max_pg = 0
        self.max_threads = 0
        self.rss_at_max_running = 0

    def run(self):
        import psycopg
        from django.db import connection

        params = connection.get_connection_params()
        params.pop("cursor_factory", None)
        params.pop("context", None)
        with psycopg.connect(
            **{k: v for k, v in params.items() if k in ("dbname", "user", "password", "host", "port")}, autocommit=True
        ) as conn:
            while not self.stop_event.wait(self.interval):
                running = conn.execute(
                    "SELECT count(*) FROM crews_execution WHERE organization_id = %s AND status = 'RUNNING'",
                    [self.organization_id],
                ).fetchone()[0]
                rss = self.proc.memory_info().rss
                self.max_rss = max(self.max_rss, rss)
                self.max_threads = max(self.max_threads, self.proc.num_threads())
                self.max_pg = max(self.max_pg, _pg_sockets(self.proc))
                if running >= self.max_running:
                    self.max_running, self.rss_at_max_running = running, rss


def run(ctx=None) -> dict:
    opts = {key: int(getattr(ctx, key, None) or value) for key, value in DEFAULTS.items()}
    _setup_django()
    import psutil
    from django.conf import settings
    from django.db import connection
    from rest_framework.test import APIClient

    from apps.accounts.services import auth_issue_tokens
    from apps.runs.models import Execution
    from kai_platform.api import ratelimit
    from kai_platform.celery import app

    ratelimit.PLAN_RATE_LIMITS["enterprise"] = (10**9, 10**9)
    organization, user, agent = make_tenant("b13")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {auth_issue_tokens(user=user)['access_token']}")
    worker, env, worker_name = _start_runs_worker()
    concurrency = int(env.get("KAI_RUNS_CONCURRENCY") or _default_concurrency())
    pool_max = int(
        env.get("KAI_DB_POOL_MAX") or settings.DATABASES["default"]["OPTIONS"].get("pool", {}).get("max_size", 0)
    )
    connection.close()
    try:

        def submit(count: int, latency_ms: int) -> list[str]:
            ids = []
            for start in range(0, count, BATCH):
                items = [
                    {"agent_id": str(agent.pk), "description": f"wait {i}", "params": {"latency_ms": latency_ms}}
                    for i in range(start, min(count, start + BATCH))
                ]
                response = client.post("/api/v1/executions/batch", {"executions": items}, format="json")
                assert response.status_code == 200, response.content[:300]
                body = response.json()
                assert body["failed"] == 0, body["results"][:3]
                ids += [r["execution"]["execution_id"] for r in body["results"]]
            connection.close()
            return ids

        def wait_ended(ids, timeout):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if Execution.objects.filter(pk__in=ids, status__in=["COMPLETED", "FAILED", "CANCELLED"]).count() >= len(
                    ids
                ):
                    connection.close()
                    return time.perf_counter()
                connection.close()
                time.sleep(0.1)
            raise TimeoutError("B13 runs did not end")

        wait_ended(submit(20, 0), 120)  # warm-up: imports, pools, a few threads
        time.sleep(1)
        proc = psutil.Process(worker.pid)
        idle_rss = proc.memory_info().rss
        # the worker stops taking messages while the runs are created, then takes them all at once:
        # this measures what one worker holds in flight, not how fast runs are created (that is B4)
        queue = settings.KAI_RUNS_QUEUE
        replies = app.control.cancel_consumer(queue, destination=[worker_name], reply=True, timeout=10)
        if not replies:
            raise RuntimeError(f"the runs worker {worker_name} did not stop consuming {queue}")
        submit_started = time.perf_counter()
        ids = submit(opts["runs"], opts["seconds"] * 1000)
        submitted = time.perf_counter() - submit_started
        sampler = Sampler(worker.pid, organization.pk)
        sampler.start()
        cpu_before = sum(proc.cpu_times()[:2])
        started, started_at = time.perf_counter(), time.time()
        app.control.add_consumer(queue, destination=[worker_name], reply=True, timeout=10)
        ended = wait_ended(ids, opts["seconds"] * max(1, math.ceil(opts["runs"] / concurrency)) * 4 + 120)
        cpu_seconds = sum(proc.cpu_times()[:2]) - cpu_before
        sampler.stop_event.set()
        sampler.join()
        wall = ended - started
        ideal = opts["seconds"] * math.ceil(opts["runs"] / concurrency)
        statuses = list(Execution.objects.filter(pk__in=ids).values_list("status", flat=True))
        phases = _phases(ids, started_at)
        per_run_kb = (sampler.rss_at_max_running - idle_rss) / 1024 / max(1, sampler.max_running)
        result = {
            "runs": len(ids),
            "completed": statuses.count("COMPLETED"),
            "model_seconds": opts["seconds"],
            "concurrency": concurrency,
            "max_running": sampler.max_running,
            "wall_s": round(wall, 1),
            "ideal_s": ideal,
            "wall_ratio": round(wall / ideal, 3),
            "submit_s": round(submitted, 1),
            "idle_rss_mb": round(idle_rss / 2**20, 1),
            "rss_at_max_mb": round(sampler.rss_at_max_running / 2**20, 1),
            "peak_rss_mb": round(sampler.max_rss / 2**20, 1),
            "rss_per_run_kb": round(per_run_kb, 1),
            "pg_connections_max": sampler.max_pg,
            "pool_max": pool_max,
            "threads_max": sampler.max_threads,
            **phases,
            "worker_cpu_s": round(cpu_seconds, 1),
            "cpu_ms_per_run": round(cpu_seconds * 1000 / max(1, len(ids)), 2),
        }
        print(
            f"B13 {result['runs']} runs of a {opts['seconds']} s builtin model on one runs worker "
            f"(make run's command, concurrency {concurrency})"
        )
        print(f"  completed            : {result['completed']}/{result['runs']}")
        print(f"  max RUNNING at once  : {result['max_running']}   (target >= 2000)")
        print(
            f"  wall / ideal         : {result['wall_s']} s / {ideal} s = {result['wall_ratio']}   "
            f"(target <= 1.1; submitting took {result['submit_s']} s)"
        )
        print(
            f"  RSS per run in flight: {result['rss_per_run_kb']} KB   (idle {result['idle_rss_mb']} MB, "
            f"at max {result['rss_at_max_mb']} MB; target <= 150 KB)"
        )
        print(f"  PostgreSQL conns     : {result['pg_connections_max']} max   (pool max_size {pool_max})")
        print(
            f"  worker CPU           : {result['worker_cpu_s']} s = {result['cpu_ms_per_run']} ms per run "
            "(user + system: what a run costs the worker, whatever the host's load)"
        )
        print(
            f"  phases (s from taking): first RUNNING {phases['first_running_s']}, all RUNNING "
            f"{phases['all_running_s']}, first ended {phases['first_ended_s']}, all ended {phases['all_ended_s']}"
        )
        return result
    finally:
        _stop(worker)
        drop_tenant(organization, user)


def _phases(ids, started_at: float) -> dict:
    """When the runs started (claimed RUNNING) and ended, in seconds after the worker began taking
    them: the intake and the completion side of the wall time."""
    from django.db.models import Max, Min

    from apps.runs.models import Execution

    spans = Execution.objects.filter(pk__in=ids).aggregate(
        first_running=Min("started_at"),
        all_running=Max("started_at"),
        first_ended=Min("completed_at"),
        all_ended=Max("completed_at"),
    )
    return {f"{name}_s": round(value.timestamp() - started_at, 1) if value else None for name, value in spans.items()}


def make_tenant(tag: str):
    """An enterprise organization (no concurrency cap in the way), its owner and a builtin agent."""
    from apps.accounts.models import Membership, Organization, User
    from apps.agents.services import agent_create

    suffix = uuid.uuid4().hex[:8]
    organization = Organization.objects.create(
        name=f"bench-{tag}-{suffix}",
        slug=f"bench-{tag}-{suffix}",
        plan="enterprise",
        settings={"max_concurrent_runs": 100000},
    )
    user = User.objects.create_user(email=f"bench-{tag}-{suffix}@example.com", password=uuid.uuid4().hex)
    Membership.objects.create(user=user, organization=organization, role="owner")
    agent = agent_create(
        organization=organization,
        actor=user,
        data={"name": tag.upper(), "role": "Waiter", "goal": "Answer", "llm": "builtin"},
    )
    return organization, user, agent


def drop_tenant(organization, user) -> None:
    from apps.accounts.models import Organization
    from apps.runs.models import Execution

    Execution.objects.filter(organization=organization).delete()
    Organization.objects.filter(pk=organization.pk).delete()
    user.delete()


def _default_concurrency() -> int:
    from kai_platform.cli import runs_worker_command

    args = runs_worker_command()
    return int(args[args.index("--concurrency") + 1])


def main(argv=None, *, doc: str = __doc__, defaults: dict = DEFAULTS, entry=None) -> int:
    """The command line of a standalone bench script: ``--<key> N`` for each of its defaults."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    for key, value in defaults.items():
        parser.add_argument(f"--{key}", type=int, default=value)
    (entry or run)(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
