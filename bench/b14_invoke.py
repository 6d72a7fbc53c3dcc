"""B14: ``POST /api/v1/deployments/{id}/invoke`` p50 over a direct in-process builtin model call.

    DATABASE_URL=… REDIS_URL=… KAI_DB_NAME=<migrated db> .venv/bin/python -m bench.b14_invoke [--calls 50]
    .venv/bin/python -m bench B14

The invoke is the whole synchronous path a deployment's caller gets: key check, an Execution
created, run by the runs worker as ``make run`` starts it (claim, prompt, budgets, the builtin
model, usage, audit, events), waited for, answered 200. The baseline is the same builtin model
answering the same prompt in this process (``get_client("builtin").complete``), no run at all.
Both are sequential, one call at a time, after a warm-up; the invoke goes through the Django test
client in this process (no HTTP server: its cost is B3's). Target: p50 overhead ≤ 20 ms.
"""

from __future__ import annotations

import statistics
import sys
import time

from bench.b13_inflight import (
    BASE_DIR,
    _setup_django,
    _start_runs_worker,
    _stop,
    drop_tenant,
    make_tenant,
)
from bench.b13_inflight import main as b13_main

sys.path.insert(0, str(BASE_DIR))

DEFAULTS = {"calls": 50}
PROMPT = "Summarise the state of the run engine in one line."


def _p50_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 2)


def run(ctx=None) -> dict:
    calls = int(getattr(ctx, "calls", None) or DEFAULTS["calls"])
    _setup_django()
    from django.db import connection
    from rest_framework.test import APIClient

    from apps.agents.services import deployment_create
    from apps.runs.models import Execution
    from kai_platform.llm import get_client

    organization, user, agent = make_tenant("b14")
    deployment, key = deployment_create(
        organization=organization, actor=user, agent=agent, name="b14", channels=["api"]
    )
    worker, _env, _name = _start_runs_worker()
    connection.close()
    try:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        url = f"/api/v1/deployments/{deployment.pk}/invoke"

        def invoke() -> float:
            started = time.perf_counter()
            response = client.post(url, {"prompt": PROMPT}, format="json")
            elapsed = time.perf_counter() - started
            assert response.status_code == 200, response.content[:300]
            connection.close()
            return elapsed

        model = get_client("builtin", model="builtin")
        messages = [{"role": "system", "content": "You are Waiter."}, {"role": "user", "content": PROMPT}]

        def direct() -> float:
            started = time.perf_counter()
            model.complete(messages)
            return time.perf_counter() - started

        for _ in range(5):  # warm-up: imports, pools, the worker's first threads
            invoke()
            direct()
        invoked = [invoke() for _ in range(calls)]
        directs = [direct() for _ in range(calls)]
        completed = Execution.objects.filter(organization=organization, status="COMPLETED").count()
        result = {
            "calls": calls,
            "invoke_p50_ms": _p50_ms(invoked),
            "invoke_p95_ms": round(sorted(invoked)[int(0.95 * (len(invoked) - 1))] * 1000, 2),
            "direct_p50_ms": _p50_ms(directs),
            "runs_completed": completed,
        }
        result["overhead_p50_ms"] = round(result["invoke_p50_ms"] - result["direct_p50_ms"], 2)
        print(f"B14 deployments/{{id}}/invoke vs a direct in-process builtin call, {calls} sequential calls each")
        print(
            f"  invoke p50           : {result['invoke_p50_ms']} ms   (p95 {result['invoke_p95_ms']} ms; "
            f"{completed} runs COMPLETED)"
        )
        print(f"  direct builtin p50   : {result['direct_p50_ms']} ms")
        print(f"  overhead p50         : {result['overhead_p50_ms']} ms   (target <= 20 ms)")
        return result
    finally:
        _stop(worker)
        drop_tenant(organization, user)


if __name__ == "__main__":
    raise SystemExit(b13_main(doc=__doc__, defaults=DEFAULTS, entry=run))
