"""B4 adapter: bench/b4_runs.py (another engineer's) measures runs over the API reaching
COMPLETED per second on 2 real Celery workers beside bare Celery no-op tasks per second on the same
workers. The runner calls its ``run(ctx) -> dict`` in a child process (bench/child.py)."""

from __future__ import annotations

import importlib.util

from bench import child
from bench.common import Context, log
from bench.results import NOT_AVAILABLE, Row, verdict

MEASURES = "runs over the API → COMPLETED per s, 2 workers"
TARGET = "≥ 0.3x; p50 accept→RUNNING < 50 ms"


def run(ctx: Context) -> tuple[list[Row], list]:
    if importlib.util.find_spec("bench.b4_runs") is None:
        return [
            Row(
                id="B4",
                measures=MEASURES,
                target=TARGET,
                status=NOT_AVAILABLE,
                note="waits for bench/b4_runs.py (run engine under load vs bare Celery no-op tasks)",
            )
        ], []
    attributes = {"workers": 2, "db_name": ctx.db_name}
    if ctx.quick:
        attributes.update(runs=100, noops=500)
    rows = [_row(ctx, attributes, "B4", MEASURES)]
    # the same burst created 50 runs a request (POST /api/v1/executions/batch)
    rows.append(_row(ctx, {**attributes, "batch": 50}, "B4 batch", f"{MEASURES}, created via executions/batch"))
    # the largest batches the route takes: 2 clients × 500 runs a request
    rows.append(
        _row(
            ctx,
            {**attributes, "batch": 500, "clients": 2, "runs": 1000 if not ctx.quick else 500},
            "B4 batch 500",
            f"{MEASURES}, created 500 a request",
        )
    )
    return rows, []


def _row(ctx: Context, attributes: dict, row_id: str, measures: str) -> Row:
    log(f"{row_id}: bench/b4_runs.py run(ctx={attributes})")
    data = child.call(ctx, "b4_runs", attributes)
    ratio = data["ratio"]
    p50 = data["accept_to_running_p50_ms"]
    ok = ratio >= 0.3 and p50 < 50 and data["completed"] == data["runs"]
    return Row(
        id=row_id,
        measures=measures,
        target=TARGET,
        figure=data["runs_per_s"],
        figure_text=f"{data['runs_per_s']:.1f} runs/s (p50 →RUNNING {p50:.0f} ms)",
        baseline=data["noop_tasks_per_s"],
        baseline_text=f"{data['noop_tasks_per_s']:.0f} no-op tasks/s",
        ratio=ratio,
        ratio_text=f"{ratio:.2f}x",
        status=verdict(ok),
        note=(
            f"{data['completed']}/{data['runs']} COMPLETED, {data['workers']} workers x {data['concurrency']} "
            f"threads, API accepts {data['api_accepts_per_s']}/s, p95 accept→RUNNING "
            f"{data['accept_to_running_p95_ms']} ms; workers' CPU {data.get('worker_cpu_ms_per_run')} ms per run "
            f"({data.get('worker_cpu_ms_per_noop')} ms per no-op); by bench/b4_runs.py"
        ),
        details=data,
    )
