"""B14 row: bench/b14_invoke.py in a child process (deployments/{id}/invoke over a direct builtin call)."""

from __future__ import annotations

from bench import child
from bench.common import Context, log
from bench.results import Row, verdict

MEASURES = "deployments/{id}/invoke p50 over a direct builtin call"
TARGET = "≤ +20 ms"


def run(ctx: Context) -> tuple[list[Row], list]:
    attributes = {"db_name": ctx.db_name, **({"calls": 20} if ctx.quick else {})}
    log(f"B14: bench/b14_invoke.py run(ctx={attributes})")
    data = child.call(ctx, "b14_invoke", attributes)
    overhead = data["overhead_p50_ms"]
    return [
        Row(
            id="B14",
            measures=MEASURES,
            target=TARGET,
            figure=data["invoke_p50_ms"],
            figure_text=f"{data['invoke_p50_ms']:.1f} ms p50 (+{overhead:.1f} ms)",
            baseline=data["direct_p50_ms"],
            baseline_text=f"{data['direct_p50_ms']:.2f} ms direct",
            ratio=overhead,
            ratio_text=f"+{overhead:.1f} ms",
            status=verdict(overhead <= 20),
            note=f"{data['calls']} sequential calls, p95 {data['invoke_p95_ms']} ms; by bench/b14_invoke.py",
            details=data,
        )
    ], []
