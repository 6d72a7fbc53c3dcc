"""B1 adapter: helper-1 owns bench/b1_agents_list.py. When it exposes ``run(ctx) -> dict`` the
runner calls it in a child process (bench/child.py; the dict needs api_ms, raw_ms, optional
queries and ratio); otherwise it runs the script's ``main()`` in a child process in the bench
environment and reads its printed summary (queries per request, median API and raw SQL times)."""

from __future__ import annotations

import importlib.util
import re

from bench import child
from bench.common import BASE_DIR, Context, log
from bench.results import ERROR, NOT_AVAILABLE, Row, verdict

TARGET = 2.5
MEASURES = "GET /api/v1/agents?limit=100 (100 agents) server time"


def _row_from(data: dict) -> Row:
    api_ms, raw_ms = data["api_ms"], data["raw_ms"]
    ratio = data.get("ratio") or api_ms / raw_ms
    queries = data.get("queries")
    return Row(
        id="B1",
        measures=MEASURES,
        target=f"<= {TARGET}x",
        figure=round(api_ms, 3),
        figure_text=f"{api_ms:.2f} ms median",
        baseline=round(raw_ms, 3),
        baseline_text=f"{raw_ms:.2f} ms raw SQL + orjson",
        ratio=round(ratio, 3),
        ratio_text=f"{ratio:.2f}x",
        status=verdict(ratio <= TARGET),
        note=(f"{queries} queries per request; " if queries is not None else "")
        + "in-process test client (no HTTP), interleaved with the raw select; by bench/b1_agents_list.py",
        details=data,
    )


def run(ctx: Context) -> tuple[list[Row], list]:
    if not (BASE_DIR / "apps" / "agents").is_dir():
        return [
            Row(
                id="B1",
                measures=MEASURES,
                target=f"<= {TARGET}x",
                status=NOT_AVAILABLE,
                note="waits for the agents app",
            )
        ], []
    if importlib.util.find_spec("bench.b1_agents_list") is None:
        return [
            Row(
                id="B1",
                measures=MEASURES,
                target=f"<= {TARGET}x",
                status=NOT_AVAILABLE,
                note="waits for bench/b1_agents_list.py",
            )
        ], []
    source = (BASE_DIR / "bench" / "b1_agents_list.py").read_text()
    if re.search(r"^def run\(", source, re.MULTILINE):
        log("B1: bench/b1_agents_list.py run(ctx)")
        data = child.call(ctx, "b1_agents_list", {"db_name": ctx.db_name, "runs": 30 if ctx.quick else 100})
        return [_row_from(data)], []
    runs = "30" if ctx.quick else "100"
    log(f"B1: python bench/b1_agents_list.py --runs {runs}")
    result = ctx.run_python(str(BASE_DIR / "bench" / "b1_agents_list.py"), "--runs", runs, timeout=600)
    out = result.stdout
    (ctx.log_dir / "b1.log").write_text(out + result.stderr)
    try:
        data = {
            "queries": int(re.search(r"queries per request\s*:\s*(\d+)", out).group(1)),
            "api_ms": float(re.search(r"API\s*:\s*([\d.]+) ms", out).group(1)),
            "raw_ms": float(re.search(r"raw SQL select\s*:\s*([\d.]+) ms", out).group(1)),
            "runs": int(runs),
        }
    except AttributeError:
        return [
            Row(
                id="B1",
                measures=MEASURES,
                target=f"<= {TARGET}x",
                status=ERROR,
                note=f"b1_agents_list.py exited {result.returncode}; see {ctx.log_dir}/b1.log",
            )
        ], []
    return [_row_from(data)], []
