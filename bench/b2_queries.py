"""B2: SQL queries per GET list/detail route, for every registered API route, with N and then 2N
rows of the route's model seeded in a fresh organization. Target: at most 6 queries, and the same
count at N and 2N (no N+1).

    DATABASE_URL=… REDIS_URL=… .venv/bin/python bench/b2_queries.py [--n 5]

The routes come from the URL conf the same way the tenant-isolation sweep finds them
(tests/test_tenant_isolation.py), and rows are made with ``tests.factories.make_tenant_object``,
so a new route or model is measured without touching this file. Every GET action is measured:
lists (``?limit=100``, so all 2N rows are on the page) and detail routes (the first seeded row).
API routes without a tenant model and without URL arguments (``auth/me``, ``system/…``) are
measured too. Each count follows one warm-up request of the same URL (steady state: the
credential cache is warm, as on a busy server); counts are taken with
``connection.execute_wrapper`` in-process. A route that does not answer 200 is reported, not
counted. ``run(ctx) -> dict`` is the entry point of ``python -m bench``.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kai_platform.settings")

TARGET = 6


def _setup_django():
    import django
    from django.apps import apps

    if not apps.ready:
        django.setup()


def _count(client, url: str) -> tuple[int, int]:
    from django.db import connection

    client.get(url)  # warm-up: credential cache, content types, compiled code paths
    queries: list[str] = []

    def counter(execute, sql, params, many, context):
        queries.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(counter):
        response = client.get(url)
    return response.status_code, len(queries)


def run(ctx=None) -> dict:
    n = int(getattr(ctx, "n", None) or 5)
    _setup_django()
    import logging

    from rest_framework.test import APIClient

    from apps.accounts.models import Membership, Organization, User
    from apps.accounts.services import auth_issue_tokens
    from kai_platform.api import ratelimit
    from tests.factories import make_tenant_object
    from tests.test_tenant_isolation import _url, api_routes, tenant_model_of

    logging.getLogger("django.request").setLevel(logging.CRITICAL)  # routes that refuse a bare GET are listed below
    ratelimit.PLAN_RATE_LIMITS["enterprise"] = (10**9, 10**9)  # hundreds of requests from one org
    suffix = uuid.uuid4().hex[:8]
    organization = Organization.objects.create(name=f"bench-b2-{suffix}", slug=f"bench-b2-{suffix}", plan="enterprise")
    user = User.objects.create_user(email=f"bench-b2-{suffix}@example.com", password=uuid.uuid4().hex)
    Membership.objects.create(user=user, organization=organization, role="owner")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {auth_issue_tokens(user=user)['access_token']}")

    routes = [r for r in api_routes() if any(m == "get" for m, _ in r.actions)]
    by_model: dict = {}
    plain = []
    for route in routes:
        model = tenant_model_of(route.view)
        if model is not None:
            by_model.setdefault(model, []).append(route)
        elif not route.is_detail:
            plain.append(route)

    results = []
    seeded: dict = {}
    try:
        for model, model_routes in sorted(by_model.items(), key=lambda kv: kv[0].__name__):
            counts: dict[str, dict] = {}
            for size in (n, 2 * n):
                try:
                    objs = seeded.setdefault(model, [])
                    while len(objs) < size:
                        objs.append(make_tenant_object(model, organization, user))
                except Exception as exc:  # noqa: BLE001 - a model the factories cannot make is reported
                    for route in model_routes:
                        counts.setdefault(route.name, {"route": route.route, "error": f"seed: {exc!r}"[:160]})
                    break
                for route in model_routes:
                    entry = counts.setdefault(route.name, {"route": route.route, "model": model.__name__})
                    if "error" in entry:
                        continue
                    try:
                        url = _url(route, objs[0]) if route.is_detail else _url(route) + "?limit=100"
                    except Exception as exc:  # noqa: BLE001
                        entry["error"] = f"url: {exc}"[:160]
                        continue
                    status, queries = _count(client, url)
                    entry["url"] = url
                    entry.setdefault("status", []).append(status)
                    entry.setdefault("queries", []).append(queries)
            results.extend(counts.values())
        for route in plain:
            try:
                url = _url(route)
            except Exception as exc:  # noqa: BLE001
                results.append({"route": route.route, "error": f"url: {exc}"[:160]})
                continue
            status, queries = _count(client, url)
            results.append(
                {
                    "route": route.route,
                    "url": url,
                    "status": [status, status],
                    "queries": [queries, queries],
                    "model": "—",
                }
            )
    finally:
        try:  # best effort: the bench database is dropped at the end anyway
            Organization.objects.filter(pk=organization.pk).delete()
            user.delete()
        except Exception as exc:  # noqa: BLE001 - e.g. a PROTECT foreign key of a newer model
            print(f"  (rows of the B2 organization left in place: {type(exc).__name__})")

    measured = [r for r in results if "queries" in r and all(s == 200 for s in r["status"])]
    skipped = [r for r in results if r not in measured]
    over = [r for r in measured if max(r["queries"]) > TARGET]
    growing = [r for r in measured if len(r["queries"]) == 2 and r["queries"][1] > r["queries"][0]]
    worst = max((max(r["queries"]) for r in measured), default=0)
    summary = {
        "n": n,
        "routes_measured": len(measured),
        "routes_skipped": len(skipped),
        "max_queries": worst,
        "over_target": [f"{r['route']} {r['queries']}" for r in over],
        "not_constant": [f"{r['route']} {r['queries']}" for r in growing],
        "skipped": [f"{r['route']} {r.get('status') or r.get('error')}" for r in skipped],
        "routes": measured,
    }
    print(f"B2 queries per GET route at N={n} and 2N={2 * n} rows (target <= {TARGET}, constant)")
    for r in sorted(measured, key=lambda r: r["route"]):
        flag = " <-- over" if r in over else (" <-- grows" if r in growing else "")
        print(f"  {r['queries'][0]:3d} {r['queries'][-1]:3d}  {r['route']}{flag}")
    for r in skipped:
        print(f"  skipped {r['route']}: {r.get('status') or r.get('error')}")
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=5)
    run(parser.parse_args())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
