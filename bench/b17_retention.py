"""B17: API p99 while the retention prune deletes an organization's expired rows, beside the same
load with the prune held still, on one daphne process.

    .venv/bin/python -m bench --only B17            # 1 M rows; --quick: 100,000

The load is ``GET /api/v1/executions?limit=20`` of the bench organization (the tables being
pruned). The pruned rows (runs with their logs and spans, and events, all 60 days old in a free
organization) are seeded in SQL by bench/b17_data.py; the prune is the product's
``retention_prune`` in a child process with the product's defaults (``KAI_RETENTION_PAUSE_SECONDS``,
``KAI_RETENTION_DUTY``, ``KAI_RETENTION_NICE`` from the environment or settings).

The machine is shared, so the baseline is measured in the same minutes as the prune: load slices
alternate quiet (the prune child stopped with SIGSTOP) and busy (SIGCONT), ``KAI_B17_PAIRS``
pairs (default 6; quick 2) of ``--duration`` seconds each. The figure is the mean of the busy
slices' p99 over the mean of the quiet slices' p99; PASS when ≤ 1.2× and the prune was running
through every busy slice. ``KAI_B17_ROWS`` scales the rows (default 1,000,000).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import time

from bench import child
from bench import servers as srv
from bench.common import PYTHON, Context, log
from bench.load import run_load
from bench.results import INVALID, Row, verdict

TARGET = 1.2
MEASURES = "API p99 (GET executions) while pruning expired rows"
STARTED = "B17-PRUNE-STARTED"


def _wait_for_marker(path, process, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and STARTED in path.read_text(errors="replace"):
            return
        if process.poll() is not None:
            raise RuntimeError(f"the prune child exited {process.returncode} before pruning; see {path}")
        time.sleep(0.2)
    raise RuntimeError(f"the prune child did not start pruning within {timeout:.0f}s; see {path}")


def _result(path) -> dict:
    for line in reversed(path.read_text(errors="replace").splitlines()):
        if line.startswith(child.MARKER):
            return json.loads(line[len(child.MARKER) :])
    return {}


def _slices(ctx: Context, url: str, headers: dict, connections: int, pruner, pairs: int) -> tuple[list, list, float]:
    """Alternate quiet (prune stopped) and busy (prune running) load slices; also the seconds the
    prune was stopped."""
    quiet, busy, stopped = [], [], 0.0
    for _ in range(pairs):
        os.kill(pruner.pid, signal.SIGSTOP)
        since = time.monotonic()
        try:
            quiet.append(run_load(url, headers, connections, ctx.duration))
        finally:
            os.kill(pruner.pid, signal.SIGCONT)
            stopped += time.monotonic() - since
        result = run_load(url, headers, connections, ctx.duration)
        if pruner.poll() is not None:  # ended during the slice: not a slice of pruning
            break
        busy.append(result)
    return quiet, busy, stopped


def run(ctx: Context) -> tuple[list[Row], list]:
    rows = int(os.environ.get("KAI_B17_ROWS", "100000" if ctx.quick else "1000000"))
    pairs = int(os.environ.get("KAI_B17_PAIRS", "2" if ctx.quick else "6"))
    log(f"B17: seeding {rows:,} expired rows")
    seeded = child.call(ctx, "b17_data", {"phase": "seed", "rows": rows})
    server = srv.start(ctx, "daphne")
    url = f"{server.base}/api/v1/executions?limit=20"
    headers = {"Authorization": f"Bearer {ctx.bootstrap['api_key']}"}
    connections = min(ctx.connections, 16)
    prune_log = ctx.log_dir / "b17-prune.log"
    prune_log.unlink(missing_ok=True)
    pruner = None
    try:
        run_load(url, headers, connections, ctx.warmup)
        pruner = ctx.children.start(
            "b17-prune",
            [
                PYTHON,
                "-m",
                "bench.child",
                "b17_data",
                json.dumps({"phase": "prune", "organization_id": seeded["organization_id"]}),
            ],
            ctx.env,
            log_path=prune_log,
        )
        _wait_for_marker(prune_log, pruner)
        quiet, busy, stopped = _slices(ctx, url, headers, connections, pruner, pairs)
        still_pruning = len(busy) == pairs
        pruner.wait(timeout=1800)
    finally:
        if pruner is not None:
            ctx.children.stop(pruner)
        srv.stop(ctx, server)
    pruned = _result(prune_log)
    if not quiet or not busy or not all(r.ok and r.p99_ms for r in quiet + busy):
        return [
            Row(
                id="B17",
                measures=MEASURES,
                target=f"<= {TARGET}x",
                status=INVALID,
                note=f"no usable slices or load errors: quiet {quiet}, busy {busy}",
            )
        ], []
    quiet_p99 = statistics.fmean(r.p99_ms for r in quiet)
    busy_p99 = statistics.fmean(r.p99_ms for r in busy)
    ratio = busy_p99 / quiet_p99
    pair_ratios = [round(b.p99_ms / q.p99_ms, 2) for q, b in zip(quiet, busy)]
    running = (pruned.get("seconds") or 0) - stopped
    note = (
        f"{seeded['counts']['total']:,} rows seeded; prune deleted {pruned.get('deleted', 0):,} in "
        f"{running:.0f} s running ({pruned.get('deleted', 0) / max(running, 1):,.0f} rows/s; "
        f"+{stopped:.0f} s stopped for the quiet slices; {pruned.get('settings')}; "
        f"{pruned.get('stats')}); {len(quiet)} quiet / {len(busy)} busy slices of {ctx.duration:.0f} s "
        f"interleaved, pair ratios {pair_ratios}; {connections} connections, {busy[0].tool}; "
        + ("the prune ran through every busy slice" if still_pruning else "the prune ended before the last slice")
    )
    rps = statistics.fmean(r.rps for r in busy), statistics.fmean(r.rps for r in quiet)
    return [
        Row(
            id="B17",
            measures=MEASURES,
            target=f"<= {TARGET}x",
            figure=round(busy_p99, 2),
            figure_text=f"{busy_p99:.1f} ms p99 ({rps[0]:.0f} req/s)",
            baseline=round(quiet_p99, 2),
            baseline_text=f"{quiet_p99:.1f} ms p99 prune stopped ({rps[1]:.0f} req/s)",
            ratio=round(ratio, 3),
            ratio_text=f"{ratio:.2f}x",
            status=verdict(ratio <= TARGET and still_pruning),
            note=note,
            details={
                "seeded": seeded,
                "pruned": pruned,
                "pair_ratios": pair_ratios,
                "quiet": [r.__dict__ for r in quiet],
                "busy": [r.__dict__ for r in busy],
            },
        )
    ], []
