"""B1: GET /api/v1/agents?limit=100 with 100 agents, beside a raw SQL select of the same rows
rendered with orjson (the issue's baseline), measured in the same run. Prints query count, median times and the ratio.

    DATABASE_URL=… REDIS_URL=… .venv/bin/python bench/b1_agents_list.py [--runs 100]

Creates a throw-away organization (enterprise plan, so 2000 req/min fit the rate limit) and
deletes it at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kai_platform.settings")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--agents", type=int, default=100)
    args = parser.parse_args()

    import django

    django.setup()
    from django.db import connection
    from rest_framework.test import APIClient

    from apps.accounts.models import Membership, Organization, User
    from apps.accounts.services import auth_issue_tokens
    from apps.agents.models import Agent
    from apps.agents.services import agent_create

    suffix = uuid.uuid4().hex[:8]
    organization = Organization.objects.create(name=f"bench-b1-{suffix}", slug=f"bench-b1-{suffix}", plan="enterprise")
    user = User.objects.create_user(email=f"bench-b1-{suffix}@example.com", password=uuid.uuid4().hex)
    Membership.objects.create(user=user, organization=organization, role="owner")
    try:
        for i in range(args.agents):
            agent_create(
                organization=organization,
                actor=user,
                data={
                    "name": f"Agent {i}",
                    "role": "Senior Researcher",
                    "goal": "Research " * 10,
                    "backstory": "An experienced researcher. " * 5,
                    "llm": "gpt-4o-mini",
                    "tools": ["calculator", "current_time"],
                    "config": {"temperature": 0.2, "max_tokens": 500},
                },
            )
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {auth_issue_tokens(user=user)['access_token']}")
        url = f"/api/v1/agents?limit={args.agents}"

        columns = ", ".join(f'"{f.column}"' for f in Agent._meta.concrete_fields)
        sql = (
            f'SELECT {columns} FROM "{Agent._meta.db_table}" WHERE "organization_id" = %s '
            f'ORDER BY "created_at" DESC, "id" LIMIT %s'
        )

        def api_once():
            started = time.perf_counter()
            response = client.get(url)
            elapsed = time.perf_counter() - started
            assert response.status_code == 200 and len(response.json()["items"]) == args.agents, response.content[:300]
            return elapsed

        import orjson

        def raw_once():
            """The issue's baseline: the raw SQL fetch of the same rows + orjson of them."""
            started = time.perf_counter()
            with connection.cursor() as cursor:
                cursor.execute(sql, [organization.pk, args.agents])
                names = [c.name for c in cursor.description]
                rows = [dict(zip(names, row)) for row in cursor.fetchall()]
            body = orjson.dumps({"items": rows}, default=str)
            elapsed = time.perf_counter() - started
            assert len(rows) == args.agents and body
            return elapsed

        for _ in range(10):  # warm-up: connections, caches, code paths
            api_once(), raw_once()
        queries = []

        def count(execute, sql, params, many, context):
            queries.append(sql)
            return execute(sql, params, many, context)

        with connection.execute_wrapper(count):
            api_once()
        api_times, raw_times = [], []
        for _ in range(args.runs):  # interleaved, so both see the same machine state
            api_times.append(api_once())
            raw_times.append(raw_once())
        api_ms = statistics.median(api_times) * 1000
        raw_ms = statistics.median(raw_times) * 1000
        print(f"B1 GET {url} with {args.agents} agents, {args.runs} runs (median)")
        print(f"  queries per request : {len(queries)}")
        for q in queries:
            print(f"    {q[:110]}")
        print(f"  API                 : {api_ms:8.3f} ms")
        print(f"  raw SQL select      : {raw_ms:8.3f} ms   (fetch + orjson of the rows)")
        print(f"  ratio API / raw     : {api_ms / raw_ms:8.2f}x   (target <= 2.5x, <= 6 queries)")
        if os.environ.get("B1_PROFILE"):
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(20):
                api_once()
            profiler.disable()
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
    finally:
        Organization.objects.filter(pk=organization.pk).delete()
        user.delete()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
