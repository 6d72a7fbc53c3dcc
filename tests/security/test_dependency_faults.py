"""Dependency faults: Postgres and Redis reached through TCP proxies the test stops and restarts.
While one is down the API answers 503 ``GENERAL_004`` within 2 s (no hanging request); it
recovers by itself within 30 s of the service returning; a run accepted before the outage is not
lost (a worker started afterwards completes it)."""

from __future__ import annotations

import time
from urllib.parse import parse_qsl, urlencode, urlparse

import pytest
import requests

from tests.helpers import LiveServer, WorkerProcess, subprocess_env
from tests.security.tcp_proxy import TCPProxy, postgres_upstream
from tests.test_permissions import CREW_AGENTS, CREW_TASKS

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ANSWER_WITHIN = 2.0
RECOVER_WITHIN = 30.0


def _proxied_urls(pg: TCPProxy, redis: TCPProxy) -> dict:
    """DATABASE_URL and REDIS_URL through the proxies (TCP on 127.0.0.1, whatever the services
    listen on: the embedded ones use Unix sockets)."""
    import os

    db, rd = urlparse(os.environ["DATABASE_URL"]), urlparse(os.environ["REDIS_URL"])
    query = urlencode([(k, v) for k, v in parse_qsl(db.query) if k not in ("host", "port")])
    redis_db = dict(parse_qsl(rd.query)).get("db", "0") if rd.scheme == "unix" else rd.path.lstrip("/") or "0"
    return {
        "DATABASE_URL": db._replace(netloc=f"{db.username or 'postgres'}@127.0.0.1:{pg.port}", query=query).geturl(),
        "REDIS_URL": f"redis://127.0.0.1:{redis.port}/{redis_db}",
    }


def _targets():
    import os

    db, rd = urlparse(os.environ["DATABASE_URL"]), urlparse(os.environ["REDIS_URL"])
    query = dict(parse_qsl(db.query))
    pg = postgres_upstream(query.get("host") or db.hostname, query.get("port") or db.port)
    return pg, ((rd.path,) if rd.scheme == "unix" else (rd.hostname, rd.port or 6379))


def _get(server, token, path="/api/v1/crews"):
    started = time.monotonic()
    try:
        response = requests.get(server.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    finally:
        elapsed = time.monotonic() - started
    return response, elapsed


def _outage(server, token, proxy: TCPProxy, name: str) -> dict:
    proxy.stop()
    answers = []
    try:
        for _ in range(3):
            response, elapsed = _get(server, token)
            answers.append((response.status_code, round(elapsed, 2)))
            assert response.status_code == 503, (name, response.status_code, response.text[:300])
            assert response.json()["code"] == "GENERAL_004", response.text
            assert elapsed <= ANSWER_WITHIN, f"{name} down: answered after {elapsed:.2f}s"
            assert name.lower() not in response.json()["detail"].lower() or "unavailable" in response.json()["detail"]
    finally:
        proxy.start()
    back = time.monotonic()
    while True:
        response, _ = _get(server, token)
        if response.status_code == 200:
            return {"answers": answers, "recovered_after_s": round(time.monotonic() - back, 2)}
        assert time.monotonic() - back <= RECOVER_WITHIN, f"no recovery {RECOVER_WITHIN}s after {name} returned"
        time.sleep(0.25)


def test_postgres_and_redis_outages_are_503_fast_recover_and_lose_no_run(make_member):
    from apps.runs.models import Execution
    from tests.conftest import jwt_for

    pg_target, redis_target = _targets()
    pg, redis = TCPProxy(*pg_target), TCPProxy(*redis_target)
    pg.start()
    redis.start()
    member = make_member(plan="enterprise")
    token = jwt_for(member.user)["access_token"]
    server = LiveServer(**_proxied_urls(pg, redis))
    worker = None
    try:
        accepted = requests.post(
            f"{server.url}/api/v1/executions",
            json={"agents_yaml": CREW_AGENTS, "tasks_yaml": CREW_TASKS},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert accepted.status_code == 202, accepted.text
        run_id = accepted.json()["id"] if "id" in accepted.json() else accepted.json()["execution_id"]

        postgres = _outage(server, token, pg, "Postgres")
        redis_outage = _outage(server, token, redis, "Redis")
        print(
            f"dependency faults: postgres {postgres}, redis {redis_outage}, faults injected {pg.faults + redis.faults}"
        )

        worker = WorkerProcess(env=subprocess_env())  # the worker talks to the services directly
        worker.wait_alive()
        deadline = time.monotonic() + 60
        while Execution.objects.get(pk=run_id).status not in {"COMPLETED", "FAILED", "CANCELLED"}:
            assert time.monotonic() < deadline, Execution.objects.get(pk=run_id).status
            time.sleep(0.5)
        assert Execution.objects.get(pk=run_id).status == "COMPLETED"
    finally:
        if worker:
            worker.stop()
        server.stop()
        pg.stop()
        redis.stop()
