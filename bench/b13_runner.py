"""B13 row: bench/b13_inflight.py in a child process (runs in flight on make run's runs worker)."""

from __future__ import annotations

from bench import child
from bench.common import Context, log
from bench.results import Row, verdict

MEASURES = "runs of a 20 s model in flight on one runs worker"
TARGET = "≥ 2000 RUNNING; wall ≤ 1.1x ideal; ≤ 150 KB/run; PG conns ≤ pool"


def run(ctx: Context) -> tuple[list[Row], list]:
    attributes = {"db_name": ctx.db_name, **({"runs": 300, "seconds": 10} if ctx.quick else {})}
    log(f"B13: bench/b13_inflight.py run(ctx={attributes})")
    data = child.call(ctx, "b13_inflight", attributes, timeout=1800)
    ok = (
        data["max_running"] >= min(2000, data["runs"])
        and data["wall_ratio"] <= 1.1
        and data["rss_per_run_kb"] <= 150
        and data["pg_connections_max"] <= data["pool_max"]
        and data["completed"] == data["runs"]
    )
    return [
        Row(
            id="B13",
            measures=MEASURES,
            target=TARGET,
            figure=data["max_running"],
            figure_text=f"{data['max_running']} RUNNING at once, wall {data['wall_s']} s",
            baseline=data["ideal_s"],
            baseline_text=f"ideal {data['ideal_s']} s",
            ratio=data["wall_ratio"],
            ratio_text=f"{data['wall_ratio']:.2f}x",
            status=verdict(ok),
            note=(
                f"{data['completed']}/{data['runs']} COMPLETED, {data['rss_per_run_kb']} KB RSS per run in flight, "
                f"{data['pg_connections_max']} PG connections (pool {data['pool_max']}), concurrency "
                f"{data['concurrency']}; by bench/b13_inflight.py"
            ),
            details=data,
        )
    ], []
