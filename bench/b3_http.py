"""B3: authenticated requests/s over HTTP on ONE server process, beside the same process serving a
bare Django view (``/bench/bare`` → ``{}``), measured in the same run, interleaved.

Routes: ``GET /api/v1/auth/me`` and ``GET /api/v1/auth/tokens?limit=20`` (20 API keys), with the
bootstrapped user's JWT. The product's server is daphne (its rows carry the verdict); uvicorn and
granian serve the same application on their own ports for the comparison the issue asks for.
All servers run at once (an idle one costs nothing) and the load visits them in turn, round
after round, so each sees the same share of whatever else the machine is doing.
"""

from __future__ import annotations

import json
import urllib.request

from bench import servers as srv
from bench.common import Context, log
from bench.load import LoadResult, run_load
from bench.results import INVALID, Row, verdict

ROUTES = {
    "bare": ("/bench/bare", False),
    "me": ("/api/v1/auth/me", True),
    "list": ("/api/v1/auth/tokens?limit=20", True),
}
SERVERS = ["daphne", "uvicorn", "granian"]
TARGET = 0.5


def _check(base: str, path: str, headers: dict) -> dict:
    request = urllib.request.Request(base + path, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200, response.status
        return json.loads(response.read())


def run(ctx: Context) -> tuple[list[Row], list]:
    auth = {"Authorization": f"Bearer {ctx.bootstrap['access_token']}"}
    started = []
    for name in SERVERS:
        if not srv.available(name):
            log(f"B3: {name} is not installed (pip install -e '.[bench]'); skipped")
            continue
        started.append(srv.start(ctx, name))
    try:
        for server in started:
            for route, (path, needs_auth) in ROUTES.items():
                body = _check(server.base, path, auth if needs_auth else {})
                if route == "list":
                    assert len(body["items"]) == 20, f"expected 20 keys, got {len(body['items'])}"
        rounds = 2
        per_slice = max(1.0, ctx.duration / rounds)
        totals: dict[tuple[str, str], list[LoadResult]] = {}
        log(
            f"B3: {len(started)} servers x {len(ROUTES)} routes, warm-up {ctx.warmup:.0f}s, "
            f"{rounds} rounds of {per_slice:.0f}s, {ctx.connections} connections"
        )
        for server in started:
            for path, needs_auth in ROUTES.values():
                run_load(server.base + path, auth if needs_auth else {}, ctx.connections, ctx.warmup)
        for index in range(rounds):
            order = started[index % len(started) :] + started[: index % len(started)]
            for server in order:
                for route, (path, needs_auth) in ROUTES.items():
                    result = run_load(server.base + path, auth if needs_auth else {}, ctx.connections, per_slice)
                    totals.setdefault((server.name, route), []).append(result)
        figures = {}
        for key, results in totals.items():
            requests = sum(r.requests for r in results)
            seconds = sum(r.duration for r in results)
            figures[key] = {
                "rps": requests / seconds,
                "requests": requests,
                "non_2xx": sum(r.non_2xx for r in results),
                "errors": sum(r.errors for r in results),
                "p50_ms": max((r.p50_ms or 0) for r in results),
                "p99_ms": max((r.p99_ms or 0) for r in results),
                "tool": results[0].tool,
            }
    finally:
        for server in started:
            if server.name == "daphne":
                ctx.shared["daphne"] = server  # B8 reuses the product's server
            else:
                srv.stop(ctx, server)

    rows = []
    names = [s.name for s in started]
    for route, label in (("me", "GET /api/v1/auth/me"), ("list", "GET /api/v1/auth/tokens?limit=20 (20 keys)")):
        if "daphne" not in names:
            rows.append(
                Row(
                    id=f"B3 {route}",
                    measures=f"{label} req/s, daphne",
                    target=f">= {TARGET}x",
                    status="ERROR",
                    note="daphne did not start",
                )
            )
            continue
        product, bare = figures[("daphne", route)], figures[("daphne", "bare")]
        ratio = product["rps"] / bare["rps"]
        status = verdict(ratio >= TARGET)
        note = ""
        if product["non_2xx"] or product["errors"] or bare["non_2xx"] or bare["errors"]:
            status = INVALID
            note = (
                f"non-2xx {product['non_2xx']}/{bare['non_2xx']}, socket errors "
                f"{product['errors']}/{bare['errors']} (route/bare)"
            )
        rows.append(
            Row(
                id=f"B3 {route}",
                measures=f"{label} req/s, 1 daphne",
                target=f">= {TARGET}x",
                figure=round(product["rps"], 1),
                figure_text=f"{product['rps']:.0f} req/s (p50 {product['p50_ms']:.0f} ms)",
                baseline=round(bare["rps"], 1),
                baseline_text=f"{bare['rps']:.0f} req/s bare view",
                ratio=round(ratio, 3),
                ratio_text=f"{ratio:.2f}x",
                status=status,
                note=note,
                details={
                    "servers": {f"{s}/{r}": v for (s, r), v in figures.items()},
                    "connections": ctx.connections,
                    "seconds_per_route": ctx.duration,
                    "load_tool": product["tool"],
                },
            )
        )
    table_rows = []
    for name in names:
        bare = figures[(name, "bare")]["rps"]
        me = figures[(name, "me")]["rps"]
        lst = figures[(name, "list")]["rps"]
        bad = sum(figures[(name, r)]["non_2xx"] + figures[(name, r)]["errors"] for r in ROUTES)
        table_rows.append(
            [
                name,
                f"{bare:.0f}",
                f"{me:.0f}",
                f"{lst:.0f}",
                f"{me / bare:.2f}x",
                f"{lst / bare:.2f}x",
                f"{lst / figures[('daphne', 'list')]['rps']:.2f}x" if "daphne" in names else "—",
                str(bad),
            ]
        )
    table = (
        "B3 ASGI servers (one process each, same app, same run; req/s)",
        ["server", "bare", "me", "tokens list", "me/bare", "list/bare", "list vs daphne", "errors"],
        table_rows,
    )
    return rows, [table]
