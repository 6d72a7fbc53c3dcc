"""``make bench``: start what the benchmarks need, run them, print the table, write
bench/results/latest.json.

    .venv/bin/python -m bench [--quick] [--with-test] [--only B1,B3,B8,B10] [--duration S] [B13 ...]

Ids given as arguments (``python -m bench B13``) run only those rows, like ``--only``.

PostgreSQL and Redis come from DATABASE_URL / REDIS_URL, or are the embedded ones
(kai_platform.embedded) when those are unset, stopped again at the end. The runner uses its own
database (kai_bench, recreated and migrated each run, dropped at the end) and its own Redis key
prefix (kai-bench; Redis db 9 when embedded). Bench data is made through the product's services
(bench/bootstrap.py). Every child process runs in its own session and is stopped on exit, also on
Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback

from bench.common import (
    BASE_DIR,
    PYTHON,
    RESULTS_DIR,
    Children,
    Context,
    drop_database,
    log,
    recreate_database,
    with_redis_db,
)
from bench.results import ERROR, NOT_AVAILABLE, Row, render, write

#: KAI_BENCH_DB_NAME / KAI_BENCH_REDIS_PREFIX let two people bench on one server at once
DB_NAME = os.environ.get("KAI_BENCH_DB_NAME", "kai_bench")
REDIS_PREFIX = os.environ.get("KAI_BENCH_REDIS_PREFIX", "kai-bench")

#: rows whose feature or harness is not there yet: id → (measures, target, what it waits for)
PENDING: dict[str, tuple[str, str, str]] = {}
FEATURE_PATHS: dict[str, str] = {}
ORDER = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B9", "B10", "B11", "B12", "B13", "B14", "B15", "B16", "B17"]
#: B8 right after B3 (it reuses B3's daphne), the heavy multi-process ones last
RUN_ORDER = [
    "B1",
    "B3",
    "B8",
    "B4",
    "B14",
    "B11",
    "B10",
    "B12",
    "B16",
    "B15",
    "B2",
    "B5",
    "B6",
    "B7",
    "B9",
    "B17",
    "B13",
]


def _pending_row(bench_id: str) -> Row:
    measures, target, waits_for = PENDING[bench_id]
    path = FEATURE_PATHS.get(bench_id)
    if path and (BASE_DIR / path).exists():
        note = f"waits for its benchmark: {waits_for} ({path} exists; not measured in this slice)"
    else:
        note = f"waits for {waits_for}"
    return Row(id=bench_id, measures=measures, target=target, status=NOT_AVAILABLE, note=note)


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short load slices (smoke test of the harness)")
    parser.add_argument("--with-test", action="store_true", help="also run make test for B10 (minutes)")
    parser.add_argument("--only", default="", help="comma-separated ids, e.g. B3,B8")
    parser.add_argument("--duration", type=float, help="seconds of load per route and server (default 10, quick 3)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--keep-db", action="store_true", help=f"keep the {DB_NAME} database at the end")
    parser.add_argument("ids", nargs="*", help="row ids to run alone (the same as --only)")
    args = parser.parse_args(argv)
    only = {x.strip().upper() for x in [*args.only.split(","), *args.ids] if x.strip()}
    wanted = [b for b in RUN_ORDER if not only or b in only]

    signal.signal(signal.SIGTERM, _on_sigterm)
    begun = time.monotonic()
    original_env = dict(os.environ)
    children = Children()
    services = []
    rows: list[Row] = []
    tables: list = []
    log_dir = RESULTS_DIR / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    database_url = None
    try:
        env = dict(os.environ)
        if not env.get("DATABASE_URL") or not env.get("REDIS_URL"):
            from kai_platform.embedded import ensure_services

            embedded_redis = not env.get("REDIS_URL")
            services = ensure_services(env)
            if embedded_redis:
                env["REDIS_URL"] = with_redis_db(env["REDIS_URL"], 9)
            log(f"embedded services started: {', '.join(type(s).__name__ for s in services)}")
        database_url = env["DATABASE_URL"]
        env.update(
            {
                "KAI_DB_NAME": DB_NAME,
                "KAI_REDIS_PREFIX": REDIS_PREFIX,
                "DEBUG": "0",
                "KAI_LOG_LEVEL": "WARNING",
                "KAI_ACCESS_TOKEN_SECONDS": "3600",
                "PYTHONPATH": str(BASE_DIR),
                "PYTHONUNBUFFERED": "1",
            }
        )
        if env.get("DJANGO_ENV") == "test":
            env["DJANGO_ENV"] = "development"
        env.pop("DJANGO_SETTINGS_MODULE", None)
        ctx = Context(
            env=env,
            db_name=DB_NAME,
            children=children,
            log_dir=log_dir,
            quick=args.quick,
            with_test=args.with_test,
            original_env=original_env,
            connections=args.connections,
            duration=args.duration or (3.0 if args.quick else 10.0),
            warmup=1.0 if args.quick else 2.0,
        )

        step = time.monotonic()
        recreate_database(database_url, DB_NAME)
        result = ctx.run_python(str(BASE_DIR / "manage.py"), "migrate", "--noinput", "-v", "0")
        if result.returncode:
            raise RuntimeError(f"migrate failed:\n{result.stdout}{result.stderr}")
        result = ctx.run_python("-m", "bench.bootstrap")
        if result.returncode:
            raise RuntimeError(f"bootstrap failed:\n{result.stdout}{result.stderr}")
        ctx.bootstrap = json.loads(result.stdout.strip().splitlines()[-1])
        log(f"database {DB_NAME} migrated and bootstrapped in {time.monotonic() - step:.1f}s")

        from bench import (
            b1_runner,
            b2_runner,
            b3_http,
            b4_runner,
            b5_socket_latency,
            b6_fanout,
            b7_socket_memory,
            b8_db_connections,
            b9_runner,
            b10_cold_start,
            b11_workflows,
            b12_upload,
            b13_runner,
            b14_runner,
            b15_knowledge_search,
            b16_ingestion,
            b17_retention,
        )

        modules = {
            "B1": b1_runner,
            "B2": b2_runner,
            "B3": b3_http,
            "B4": b4_runner,
            "B5": b5_socket_latency,
            "B6": b6_fanout,
            "B7": b7_socket_memory,
            "B8": b8_db_connections,
            "B9": b9_runner,
            "B10": b10_cold_start,
            "B11": b11_workflows,
            "B12": b12_upload,
            "B13": b13_runner,
            "B14": b14_runner,
            "B15": b15_knowledge_search,
            "B16": b16_ingestion,
            "B17": b17_retention,
        }
        for bench_id in wanted:
            if bench_id in PENDING:
                rows.append(_pending_row(bench_id))
                continue
            step = time.monotonic()
            try:
                new_rows, new_tables = modules[bench_id].run(ctx)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - one failing benchmark must not hide the others
                (log_dir / f"{bench_id}-error.log").write_text(traceback.format_exc())
                new_rows, new_tables = (
                    [
                        Row(
                            id=bench_id,
                            measures=bench_id,
                            target="—",
                            status=ERROR,
                            note=f"{type(exc).__name__}: {str(exc)[:200]}",
                        )
                    ],
                    [],
                )
            rows += new_rows
            tables += new_tables
            log(f"{bench_id} done in {time.monotonic() - step:.1f}s")
            print(render(new_rows, new_tables), flush=True)  # an interrupted run keeps what it measured
    except KeyboardInterrupt:
        log("interrupted: stopping every child")
        children.stop_all()
        return 130
    finally:
        children.stop_all()
        if database_url and not args.keep_db:
            try:
                drop_database(database_url, DB_NAME)
            except Exception as exc:  # noqa: BLE001
                log(f"could not drop {DB_NAME}: {exc}")
        for service in reversed(services):
            service.stop()
    rows.sort(key=lambda r: ORDER.index(r.id.split()[0]) if r.id.split()[0] in ORDER else len(ORDER))
    elapsed = time.monotonic() - begun
    path = write(
        rows,
        tables,
        {
            "elapsed_seconds": round(elapsed, 1),
            "quick": args.quick,
            "load_seconds_per_route": ctx.duration,
            "connections": ctx.connections,
            "python": PYTHON,
        },
    )
    print()
    print(render(rows, tables))
    print()
    log(
        f"finished in {elapsed:.0f}s; results in {path.relative_to(BASE_DIR)}; logs in {log_dir.relative_to(BASE_DIR)}/"
    )
    return 1 if any(r.status == ERROR for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
