"""B17: API p99 while the retention prune deletes an organization's expired rows, beside the same
load with no prune running, on one daphne process.

The load is ``GET /api/v1/executions?limit=20`` of the bench organization (the tables being
pruned). The pruned rows (runs with their logs and spans, and events, all 60 days old in a free
organization) are seeded in SQL by bench/b17_data.py; the prune is the product's
``retention_prune`` in a child process, started as the measured load starts. The issue's figure
is 1 M rows; ``KAI_B17_ROWS`` scales it (default 1,000,000; ``--quick`` 100,000). PASS when the
p99 during the prune is ≤ 1.2× the p99 without it.
"""
from __future__ import annotations

import os
import threading
import time

from bench import child
from bench import servers as srv
from bench.common import Context, log
from bench.load import run_load
from bench.results import INVALID, Row, verdict

TARGET = 1.2
MEASURES = "API p99 (GET executions) while pruning expired rows"


def run(ctx: Context) -> tuple[list[Row], list]:
    rows = int(os.environ.get("KAI_B17_ROWS", "100000" if ctx.quick else "1000000"))
    pause = float(os.environ.get("KAI_RETENTION_PAUSE_SECONDS", "0.1"))  # the product's default
    log(f"B17: seeding {rows:,} expired rows")
    seeded = child.call(ctx, "b17_data", {"phase": "seed", "rows": rows})
    server = srv.start(ctx, "daphne")
    url = f"{server.base}/api/v1/executions?limit=20"
    headers = {"Authorization": f"Bearer {ctx.bootstrap['api_key']}"}
    connections = min(ctx.connections, 16)
    try:
        run_load(url, headers, connections, ctx.warmup)
        quiet = run_load(url, headers, connections, ctx.duration)
        pruned: dict = {}
        pruner = threading.Thread(target=lambda: pruned.update(child.call(
            ctx, "b17_data", {"phase": "prune", "organization_id": seeded["organization_id"], "pause": pause})))
        pruner.start()
        time.sleep(0.5)  # the child's Django start-up; the prune is under way when the load starts
        busy = run_load(url, headers, connections, ctx.duration)
        still_pruning = pruner.is_alive()
        pruner.join()
    finally:
        srv.stop(ctx, server)
    if not (quiet.ok and busy.ok and quiet.p99_ms and busy.p99_ms):
        return [Row(id="B17", measures=MEASURES, target=f"<= {TARGET}x", status=INVALID,
                    note=f"load errors: quiet {quiet}, busy {busy}")], []
    ratio = busy.p99_ms / quiet.p99_ms
    note = (f"{seeded['counts']['total']:,} rows seeded (of the issue's 1 M: {rows / 1e6:.2f}x); prune deleted "
            f"{pruned.get('deleted', 0):,} in {pruned.get('seconds')} s ({pruned.get('rows_per_s', 0):,} rows/s, "
            f"batches of 5,000, pause {pause} s); {connections} connections, {busy.tool}; "
            + ("the prune outlasted the load" if still_pruning else "the prune ended before the load did"))
    return [Row(id="B17", measures=MEASURES, target=f"<= {TARGET}x",
                figure=round(busy.p99_ms, 2), figure_text=f"{busy.p99_ms:.1f} ms p99 ({busy.rps:.0f} req/s)",
                baseline=round(quiet.p99_ms, 2), baseline_text=f"{quiet.p99_ms:.1f} ms p99 without ({quiet.rps:.0f} req/s)",
                ratio=round(ratio, 3), ratio_text=f"{ratio:.2f}x", status=verdict(ratio <= TARGET and still_pruning),
                note=note, details={"seeded": seeded, "pruned": pruned, "quiet": quiet.__dict__,
                                    "busy": busy.__dict__})], []
