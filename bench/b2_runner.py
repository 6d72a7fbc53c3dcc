"""B2 adapter: bench/b2_queries.py counts SQL queries per GET list/detail route at N and 2N seeded
rows; the runner calls its ``run(ctx) -> dict`` in a child process (bench/child.py)."""

from __future__ import annotations

from bench import child
from bench.common import Context, log
from bench.results import Row, verdict

MEASURES = "queries per GET list/detail route, every route"
TARGET = "<= 6, constant in N"


def run(ctx: Context) -> tuple[list[Row], list]:
    n = 5
    log(f"B2: bench/b2_queries.py run(n={n})")
    data = child.call(ctx, "b2_queries", {"n": n, "db_name": ctx.db_name})
    over, growing = data["over_target"], data["not_constant"]
    notes = [f"{data['routes_measured']} routes measured at N={n} and 2N={2 * n} rows"]
    if over:
        notes.append(f"over 6: {', '.join(over)}")
    if growing:
        notes.append(f"grows with N: {', '.join(growing)}")
    if data["skipped"]:
        notes.append(f"not 200, not counted: {', '.join(data['skipped'])}")
    row = Row(
        id="B2",
        measures=MEASURES,
        target=TARGET,
        figure=data["max_queries"],
        figure_text=f"max {data['max_queries']} queries/request",
        baseline_text="—",
        ratio_text="—",
        status=verdict(not over and not growing),
        note="; ".join(notes),
        details=data,
    )
    table_rows = [
        [r["route"].replace("api/v1/", "").lstrip("^").rstrip("$"), str(r["queries"][0]), str(r["queries"][-1])]
        for r in sorted(data["routes"], key=lambda r: r["route"])
        if max(r["queries"]) >= 3
    ]
    return [row], [
        (
            f"B2 routes with 3+ queries at N, 2N rows (the other {data['routes_measured'] - len(table_rows)}"
            " routes: 0-2; all in latest.json)",
            ["route", "N", "2N"],
            table_rows,
        )
    ]
