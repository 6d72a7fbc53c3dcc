"""Rows of the benchmark table, the printed table and ``bench/results/latest.json``."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from dataclasses import asdict, dataclass, field

from bench.common import RESULTS_DIR

PASS, MISS, NOT_AVAILABLE, NOT_RUN, ERROR, INVALID = "PASS", "MISS", "not available yet", "not run", "ERROR", "INVALID"


@dataclass
class Row:
    id: str
    measures: str
    target: str
    figure: float | None = None
    figure_text: str = "—"
    baseline: float | None = None
    baseline_text: str = "—"
    ratio: float | None = None
    ratio_text: str = "—"
    status: str = NOT_RUN
    note: str = ""
    details: dict = field(default_factory=dict)


def verdict(ok: bool) -> str:
    return PASS if ok else MISS


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    line = "+-" + "-+-".join("-" * w for w in widths) + "-+"
    out = [line, "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |", line]
    out += ["| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |" for row in rows]
    out.append(line)
    return "\n".join(out)


def render(rows: list[Row], extra_tables: list[tuple[str, list[str], list[list[str]]]]) -> str:
    body = [[r.id, r.measures, r.figure_text, r.baseline_text, r.ratio_text, r.target, r.status] for r in rows]
    parts = [_table(["id", "measures", "figure", "baseline (same run)", "ratio", "target", "result"], body)]
    notes = [f"  {r.id}: {r.note}" for r in rows if r.note]
    if notes:
        parts.append("notes:\n" + "\n".join(notes))
    for title, headers, table_rows in extra_tables:
        parts.append(f"{title}\n{_table(headers, table_rows)}")
    return "\n\n".join(parts)


def write(rows: list[Row], extra_tables, meta: dict) -> os.PathLike:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / "latest.json"
    document = {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        **meta,
        "rows": [asdict(r) for r in rows],
        "tables": [{"title": t, "headers": h, "rows": r} for t, h, r in extra_tables],
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path
