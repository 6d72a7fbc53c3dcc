"""B9 adapter: bench/b9_beat_lag.py fires every-minute schedules through a real beat and 2 workers
and measures tick → RUNNING; the runner calls its ``run(ctx) -> dict`` in a child process."""

from __future__ import annotations

from bench import child
from bench.common import Context, log
from bench.results import INVALID, Row, verdict

MEASURES = "beat tick → run RUNNING lag, p99"
TARGET = "< 1 s"


def run(ctx: Context) -> tuple[list[Row], list]:
    attributes = {"schedules": 10, "ticks": 1 if ctx.quick else 2, "db_name": ctx.db_name}
    log(f"B9: bench/b9_beat_lag.py run({attributes}) — waits for whole minutes")
    data = child.call(ctx, "b9_beat_lag", attributes, timeout=400)
    p99, p50 = data["lag_p99_ms"], data["lag_p50_ms"]
    complete = data["measured_runs"] == data["expected_runs"]
    status = verdict(p99 is not None and p99 < 1000) if complete else INVALID
    note = (
        f"{data['measured_runs']}/{data['expected_runs']} runs RUNNING; {data['schedules']} every-minute "
        f"schedules per tick (a burst), ticks {', '.join(data['ticks'])}; 1 beat, {data['workers']} workers x "
        f"{data['concurrency']} threads; per-tick max {data['per_tick_max_ms']}; tick → run created p50/max "
        f"{data.get('tick_to_created_p50_ms')}/{data.get('tick_to_created_max_ms')} ms, created → RUNNING "
        f"{data.get('created_to_running_p50_ms')}/{data.get('created_to_running_max_ms')} ms; "
        f"by bench/b9_beat_lag.py"
    )
    return [
        Row(
            id="B9",
            measures=MEASURES,
            target=TARGET,
            figure=p99,
            figure_text=f"p99 {p99:.0f} ms (p50 {p50:.0f} ms)" if p99 is not None else "no runs",
            baseline_text="—",
            ratio_text="—",
            status=status,
            note=note,
            details=data,
        )
    ], []
