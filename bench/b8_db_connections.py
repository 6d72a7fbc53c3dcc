"""B8: database connections of ONE daphne process under 200 concurrent requests (the
authenticated tokens list), sampled from ``pg_stat_activity`` every 50 ms during the load, beside
the configured pool size (KAI_DB_POOL_MAX, default 20). The sampler's own connection is not
counted. PASS when the maximum never exceeds the pool."""

from __future__ import annotations

import threading
import time

from bench import servers as srv
from bench.common import Context, log
from bench.load import run_load
from bench.results import INVALID, Row, verdict

CONCURRENCY = 200
INTERVAL = 0.05


def run(ctx: Context) -> tuple[list[Row], list]:
    import psycopg

    server = ctx.shared.pop("daphne", None) or srv.start(ctx, "daphne")
    samples: list[tuple[int, int]] = []
    stop = threading.Event()

    def sample():
        with psycopg.connect(**ctx.db_params("postgres"), autocommit=True) as conn:
            while not stop.is_set():
                row = conn.execute(
                    "SELECT count(*), count(*) FILTER (WHERE state = 'active') FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    [ctx.db_name],
                ).fetchone()
                samples.append((row[0], row[1]))
                time.sleep(INTERVAL)

    duration = max(3.0, ctx.duration / 2)
    sampler = threading.Thread(target=sample, daemon=True)
    try:
        sampler.start()
        log(f"B8: {CONCURRENCY} concurrent requests for {duration:.0f}s against one daphne, sampling every 50 ms")
        result = run_load(
            f"{server.base}/api/v1/auth/tokens?limit=20",
            {"Authorization": f"Bearer {ctx.bootstrap['access_token']}"},
            connections=CONCURRENCY,
            duration=duration,
            threads=2,
        )
        time.sleep(0.2)
    finally:
        stop.set()
        sampler.join(5)
        srv.stop(ctx, server)
    peak = max((s[0] for s in samples), default=0)
    peak_active = max((s[1] for s in samples), default=0)
    pool = ctx.pool_max
    note = (
        f"{len(samples)} samples (sampler connects to 'postgres', not counted); peak active {peak_active}; "
        f"{result.rps:.0f} req/s, p99 {result.p99_ms or 0:.0f} ms, non-2xx {result.non_2xx}, errors {result.errors}"
    )
    status = verdict(peak <= pool)
    if result.non_2xx or result.errors or not result.requests:
        status, note = INVALID, note + " — requests failed under load: no verdict"
    return [
        Row(
            id="B8",
            measures=f"DB connections, {CONCURRENCY} concurrent list requests, 1 daphne",
            target="<= pool",
            figure=peak,
            figure_text=f"max {peak} connections",
            baseline=pool,
            baseline_text=f"pool max {pool}",
            ratio=round(peak / pool, 3) if pool else None,
            ratio_text=f"{peak / pool:.2f}x" if pool else "—",
            status=status,
            note=note,
            details={"samples": len(samples), "peak_active": peak_active, "load": result.__dict__},
        )
    ], []
