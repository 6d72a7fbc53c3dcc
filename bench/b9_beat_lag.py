"""B9: beat tick → run RUNNING lag. K every-minute schedules (agent tasks on the builtin provider)
fire through a REAL ``celery beat`` (DatabaseScheduler) and 2 real workers; for every tick after
beat started, the lag is the run's ``started_at`` (its RUNNING transition) minus the tick's wall
time (from the run's ``schedule:<id>:<tick>`` dedupe key). Target: p99 < 1 s.

    DATABASE_URL=… REDIS_URL=… .venv/bin/python bench/b9_beat_lag.py [--schedules 10] [--ticks 2]

All K schedules share the minute, so each tick is a burst of K fires and K runs: the lag includes
beat's wake-up, the fire task, the run's queueing behind the others of its burst and PREPARING.
Cron has minute resolution, so this takes one to two minutes per tick. ``run(ctx) -> dict`` is the
entry point of ``python -m bench``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kai_platform.settings")

DEFAULTS = {"schedules": 10, "ticks": 2, "workers": 2, "concurrency": 8}
TARGET_MS = 1000.0


def _start_beat(log_path: Path) -> subprocess.Popen:
    from django.conf import settings
    from django.db import connection

    env = os.environ.copy()
    env.update(
        KAI_REDIS_PREFIX=settings.KAI_REDIS_PREFIX,
        KAI_DB_NAME=connection.settings_dict["NAME"],
        PYTHONPATH=str(BASE_DIR),
        KAI_DB_POOL_MAX="4",
    )
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "kai_platform",
            "beat",
            "--loglevel",
            "INFO",
            "--scheduler",
            "django_celery_beat.schedulers:DatabaseScheduler",
            "--pidfile=",
            "--max-interval",
            "5",
        ],
        cwd=BASE_DIR,
        env=env,
        start_new_session=True,
        stdout=open(log_path, "wb"),
        stderr=subprocess.STDOUT,
    )


def _percentile(values, q):
    values = sorted(values)
    if not values:
        return float("nan")
    return values[min(len(values) - 1, max(0, int(round(q * (len(values) - 1)))))]


def run(ctx=None) -> dict:
    opts = {key: int(getattr(ctx, key, None) or value) for key, value in DEFAULTS.items()}
    from bench.b4_runs import _setup_django, _start_workers, _stop_workers

    _setup_django()
    from django.db import connection

    from apps.accounts.models import Membership, Organization, User
    from apps.agents.services import agent_create
    from apps.runs.models import Execution
    from apps.scheduler.services import schedule_create

    suffix = uuid.uuid4().hex[:8]
    organization = Organization.objects.create(
        name=f"bench-b9-{suffix}",
        slug=f"bench-b9-{suffix}",
        plan="enterprise",
        settings={"max_concurrent_runs": 100000},
    )
    user = User.objects.create_user(email=f"bench-b9-{suffix}@example.com", password=uuid.uuid4().hex)
    Membership.objects.create(user=user, organization=organization, role="owner")
    agent = agent_create(
        organization=organization, actor=user, data={"name": "B9", "role": "Echo", "goal": "Echo", "llm": "builtin"}
    )
    schedules = [
        schedule_create(
            organization=organization,
            actor=user,
            data={
                "name": f"B9 every minute {i}",
                "cron_expression": "* * * * *",
                "agent": agent.pk,
                "task": {"description": "ping", "expected_output": "pong"},
            },
        )
        for i in range(opts["schedules"])
    ]
    log_dir = Path(os.environ.get("KAI_BENCH_LOG_DIR") or BASE_DIR / "bench" / "results" / "logs")
    log_dir.mkdir(parents=True, exist_ok=True)
    workers = _start_workers(opts["workers"], opts["concurrency"], suffix)
    connection.close()
    beat = None
    try:
        beat = _start_beat(log_dir / "b9-beat.log")
        beat_started = datetime.now(UTC)
        # the ticks that count: whole minutes strictly after beat started (beat may send the
        # latest past tick on start-up; that one measures start-up, not the tick)
        first = beat_started.replace(second=0, microsecond=0).timestamp() + 60
        ticks = [first + 60 * i for i in range(opts["ticks"])]
        wanted = {datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:00Z") for t in ticks}
        deadline = ticks[-1] + 60
        rows = []
        while time.time() < deadline:
            time.sleep(2)
            if beat.poll() is not None:
                raise RuntimeError(f"beat exited {beat.returncode}; see {log_dir}/b9-beat.log")
            rows = list(
                Execution.objects.filter(
                    organization=organization, started_at__isnull=False, dedupe_key__startswith="schedule:"
                ).values_list("dedupe_key", "started_at", "created_at")
            )
            seen = [r for r in rows if r[0].split(":", 2)[2] in wanted]
            if len(seen) >= len(wanted) * len(schedules):
                break
            connection.close()
    finally:
        if beat is not None and beat.poll() is None:
            import signal

            os.killpg(beat.pid, signal.SIGTERM)
            try:
                beat.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(beat.pid, signal.SIGKILL)
        _stop_workers(workers)

    lags, per_tick, fired, queued = [], {}, [], []
    for key, started_at, created_at in rows:
        tick = key.split(":", 2)[2]
        if tick not in wanted:
            continue
        tick_at = datetime.strptime(tick, "%Y-%m-%dT%H:%M:00Z").replace(tzinfo=UTC)
        lag = (started_at - tick_at).total_seconds() * 1000
        lags.append(lag)
        per_tick.setdefault(tick, []).append(lag)
        fired.append((created_at - tick_at).total_seconds() * 1000)  # tick → the fire created the run
        queued.append((started_at - created_at).total_seconds() * 1000)  # the run created → RUNNING
    expected = len(wanted) * len(schedules)
    result = {
        "schedules": len(schedules),
        "ticks": sorted(wanted),
        "expected_runs": expected,
        "measured_runs": len(lags),
        "workers": opts["workers"],
        "concurrency": opts["concurrency"],
        "lag_p50_ms": round(statistics.median(lags), 1) if lags else None,
        "lag_p99_ms": round(_percentile(lags, 0.99), 1) if lags else None,
        "lag_min_ms": round(min(lags), 1) if lags else None,
        "per_tick_max_ms": {t: round(max(v), 1) for t, v in sorted(per_tick.items())},
        # where the lag goes: tick → run created (beat + the fire task), run created → RUNNING (queue + claim)
        "tick_to_created_p50_ms": round(statistics.median(fired), 1) if fired else None,
        "tick_to_created_max_ms": round(max(fired), 1) if fired else None,
        "created_to_running_p50_ms": round(statistics.median(queued), 1) if queued else None,
        "created_to_running_max_ms": round(max(queued), 1) if queued else None,
    }
    print(f"B9 beat tick → RUNNING, {len(schedules)} every-minute schedules, ticks {sorted(wanted)}")
    print(f"  runs RUNNING          : {len(lags)}/{expected}")
    if lags:
        print(
            f"  lag p50 / p99 / min   : {result['lag_p50_ms']:.0f} / {result['lag_p99_ms']:.0f} / "
            f"{result['lag_min_ms']:.0f} ms   (target p99 < {TARGET_MS:.0f} ms)"
        )
        print(
            f"  tick → run created    : p50 {result['tick_to_created_p50_ms']:.0f} / max "
            f"{result['tick_to_created_max_ms']:.0f} ms;  created → RUNNING: p50 "
            f"{result['created_to_running_p50_ms']:.0f} / max {result['created_to_running_max_ms']:.0f} ms"
        )
    try:
        Organization.objects.filter(pk=organization.pk).delete()
        user.delete()
    except Exception:  # noqa: BLE001 - best effort; the bench database is dropped at the end
        pass
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for key, value in DEFAULTS.items():
        parser.add_argument(f"--{key}", type=int, default=value)
    run(parser.parse_args())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
