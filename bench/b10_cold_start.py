"""B10: ``make run`` cold start to healthy, and ``make test`` wall time.

Cold start: ``python -m kai_platform.cli up`` (what ``make run`` runs once the venv exists) on a
fresh database (kai_bench_cold_<hex>) and a free port, against the services the runner uses;
timed from launch to the first 200 from /health (migrations, bootstrap, daphne, worker and beat
included), then SIGINT as Ctrl-C would, and the wait for a clean exit.

make test: only with ``--with-test`` (the suite takes minutes); the duration is recorded in
bench/results/make_test.json and later runs without the flag show the last recorded one.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import signal
import subprocess
import time

from bench.common import BASE_DIR, PYTHON, RESULTS_DIR, Context, drop_database, free_port, log, wait_http
from bench.results import NOT_RUN, Row, verdict

START_TARGET = 60.0
TEST_TARGET = 600.0
MAKE_TEST_FILE = RESULTS_DIR / "make_test.json"


def cold_start(ctx: Context) -> Row:
    db = f"kai_bench_cold_{secrets.token_hex(3)}"
    port = free_port()
    env = {
        **ctx.env,
        "KAI_DB_NAME": db,
        "KAI_PORT": str(port),
        "KAI_HOST": "127.0.0.1",
        "KAI_REDIS_PREFIX": f"kai-bench-cold-{secrets.token_hex(3)}",
    }
    for name in ("DJANGO_SETTINGS_MODULE", "DEBUG", "KAI_LOG_LEVEL"):  # make run's own defaults
        env.pop(name, None)
    log(f"B10: kai up on a fresh database {db}, port {port}")
    started = time.monotonic()
    process = ctx.children.start(
        "kai up", [PYTHON, "-m", "kai_platform.cli", "up"], env, log_path=ctx.log_dir / "b10-kai-up.log"
    )
    try:
        healthy = wait_http(f"http://127.0.0.1:{port}/health", START_TARGET * 2, process)
        elapsed = time.monotonic() - started
        stop_started = time.monotonic()
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # Ctrl-C: kai up stops its children itself
            try:
                process.wait(40)
            except subprocess.TimeoutExpired:
                pass
        stopped = process.poll() is not None
        stop_seconds = time.monotonic() - stop_started
        code = process.returncode
    finally:
        ctx.children.stop(process)
        try:
            drop_database(ctx.env["DATABASE_URL"], db)
        except Exception as exc:  # noqa: BLE001 - a leftover database is reported, not fatal
            log(f"B10: could not drop {db}: {exc}")
    if not healthy:
        return Row(
            id="B10 up",
            measures="make run cold start to healthy",
            target=f"< {START_TARGET:.0f} s",
            status="MISS",
            figure_text=f"not healthy after {elapsed:.0f} s",
            note=f"see {ctx.log_dir}/b10-kai-up.log",
        )
    return Row(
        id="B10 up",
        measures="make run cold start → /health 200 (fresh DB)",
        target=f"< {START_TARGET:.0f} s",
        figure=round(elapsed, 2),
        figure_text=f"{elapsed:.1f} s",
        baseline=START_TARGET,
        baseline_text=f"target {START_TARGET:.0f} s",
        ratio=round(elapsed / START_TARGET, 3),
        ratio_text=f"{elapsed / START_TARGET:.2f}x",
        status=verdict(elapsed < START_TARGET),
        note=(
            f"Ctrl-C → exit in {stop_seconds:.1f} s (code {code})"
            if stopped
            else "did not exit within 40 s of SIGINT; killed"
        )
        + "; venv creation/pip install not included",
        details={"stop_seconds": stop_seconds, "exit_code": code, "database": db},
    )


def make_test(ctx: Context) -> Row:
    row = Row(id="B10 test", measures="make test wall time", target=f"< {TEST_TARGET / 60:.0f} min")
    if ctx.with_test:
        log("B10: running make test (minutes)")
        env = dict(ctx.original_env)
        started = time.monotonic()
        result = subprocess.run(
            ["make", "test"],
            cwd=BASE_DIR,
            env=env,
            stdout=open(ctx.log_dir / "make-test.log", "wb"),
            stderr=subprocess.STDOUT,
        )
        elapsed = time.monotonic() - started
        record = {
            "seconds": elapsed,
            "exit_code": result.returncode,
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        MAKE_TEST_FILE.parent.mkdir(parents=True, exist_ok=True)
        MAKE_TEST_FILE.write_text(json.dumps(record) + "\n")
        fresh = True
    elif MAKE_TEST_FILE.exists():
        record = json.loads(MAKE_TEST_FILE.read_text())
        fresh = False
    else:
        row.status = NOT_RUN
        row.note = "make bench --with-test (or python -m bench --with-test) runs the suite and records its time"
        return row
    elapsed = record["seconds"]
    row.figure, row.figure_text = round(elapsed, 1), f"{elapsed / 60:.1f} min"
    row.baseline, row.baseline_text = TEST_TARGET, f"target {TEST_TARGET / 60:.0f} min"
    row.ratio, row.ratio_text = round(elapsed / TEST_TARGET, 3), f"{elapsed / TEST_TARGET:.2f}x"
    row.status = verdict(elapsed < TEST_TARGET and record["exit_code"] == 0)
    row.note = f"exit code {record['exit_code']}" + (
        "" if fresh else f"; recorded {record['at']}, not re-run (--with-test re-runs it)"
    )
    row.details = record
    return row


def run(ctx: Context) -> tuple[list[Row], list]:
    return [cold_start(ctx), make_test(ctx)], []
