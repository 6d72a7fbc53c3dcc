"""Runs another engineer's ``bench/<module>.py:run(ctx) -> dict`` in a child process with the
bench environment (its own Django, its own connection pool: nothing stays open in the runner,
which would show up in B8's pg_stat_activity counts), and prints the dict as the last line,
prefixed with ``BENCH-RESULT ``.

    python -m bench.child <module> '<json of ctx attributes>'
"""

from __future__ import annotations

import importlib
import json
import signal
import sys
from types import SimpleNamespace

MARKER = "BENCH-RESULT "


def call(ctx, module: str, attributes: dict, timeout: float = 900) -> dict:
    """From the runner: run ``bench.<module>.run`` in a child, return its dict."""
    from bench.common import log

    result = ctx.run_python("-m", "bench.child", module, json.dumps(attributes), timeout=timeout)
    (ctx.log_dir / f"{module}.log").write_text(result.stdout + result.stderr)
    for line in reversed(result.stdout.splitlines()):
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER) :])
    log(f"{module}.run exited {result.returncode} without a result; see {ctx.log_dir}/{module}.log")
    raise RuntimeError(f"{module}.run exited {result.returncode}; see bench/results/logs/{module}.log")


def _on_sigterm(signum, frame):
    raise SystemExit(143)  # unwind: the benchmark's finally stops the workers it started


def main() -> int:
    signal.signal(signal.SIGTERM, _on_sigterm)
    module, attributes = sys.argv[1], json.loads(sys.argv[2])
    result = importlib.import_module(f"bench.{module}").run(SimpleNamespace(**attributes))
    print(MARKER + json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
