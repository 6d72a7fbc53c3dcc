"""Promises that need real server processes: tokens under real concurrency, rate-limit tiers shared by
two daphne processes, and a web process killed after it accepted a run."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.factories import PASSWORD
from tests.helpers import LiveServer, WorkerProcess
from tests.test_permissions import CREW_AGENTS, CREW_TASKS

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PARALLEL_REFRESHES = 50


def test_50_parallel_uses_of_one_refresh_token_succeed_exactly_once(make_member):
    member = make_member()
    server = LiveServer()
    try:
        tokens = requests.post(
            f"{server.url}/api/v1/auth/login", json={"email": member.user.email, "password": PASSWORD}, timeout=30
        ).json()

        def use(_):
            return requests.post(
                f"{server.url}/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}, timeout=60
            )

        with ThreadPoolExecutor(max_workers=PARALLEL_REFRESHES) as pool:
            responses = list(pool.map(use, range(PARALLEL_REFRESHES)))
        statuses = [r.status_code for r in responses]
        assert statuses.count(200) == 1, statuses
        assert statuses.count(401) == PARALLEL_REFRESHES - 1, statuses
        # the one winner's new pair works; the reused token stays dead
        [winner] = [r.json() for r in responses if r.status_code == 200]
        me = requests.get(
            f"{server.url}/api/v1/auth/me", headers={"Authorization": f"Bearer {winner['access_token']}"}, timeout=30
        )
        assert me.status_code == 200
        again = requests.post(
            f"{server.url}/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}, timeout=30
        )
        assert again.status_code == 401
    finally:
        server.stop()


def test_rate_limit_tiers_hold_across_two_server_processes(make_member):
    """A free-plan organization (hard cap 120/min) spread over two daphne processes sharing Redis
    gets 120 answers in all, then 429 GENERAL_002 from either process."""
    from apps.accounts.services import api_key_create

    member = make_member(plan="free")
    _, key = api_key_create(
        organization=member.organization, created_by=member.user, creator_role="owner", name="two servers"
    )
    servers = [LiveServer(), LiveServer()]
    try:
        headers = {"Authorization": f"Bearer {key}"}
        with requests.Session() as session:
            answers = [
                session.get(f"{servers[i % 2].url}/api/v1/auth/session", headers=headers, timeout=30)
                for i in range(126)
            ]
        statuses = [r.status_code for r in answers]
        assert statuses == [200] * 120 + [429] * 6, statuses
        assert {r.json()["code"] for r in answers[120:]} == {"GENERAL_002"}
        assert all(r.headers["X-RateLimit-Limit"] == "120" for r in answers)
        assert all(int(r.headers["Retry-After"]) >= 1 for r in answers[120:])
    finally:
        for server in servers:
            server.stop()


def test_killing_the_web_process_loses_no_accepted_run(make_member):
    from apps.runs.models import Execution
    from tests.conftest import jwt_for

    member = make_member(plan="enterprise")
    headers = {"Authorization": f"Bearer {jwt_for(member.user)['access_token']}"}
    server = LiveServer()
    accepted = []
    try:
        for _ in range(3):
            response = requests.post(
                f"{server.url}/api/v1/executions",
                headers=headers,
                timeout=30,
                json={"agents_yaml": CREW_AGENTS, "tasks_yaml": CREW_TASKS},
            )
            assert response.status_code == 202, response.text
            accepted.append(response.json()["execution_id"])
    finally:
        os.killpg(server.process.pid, signal.SIGKILL)  # no graceful shutdown: the process just dies
        server.process.wait()
    replacement, worker = LiveServer(), WorkerProcess()
    try:
        worker.wait_alive()
        deadline = time.monotonic() + 60
        while True:
            states = [
                requests.get(f"{replacement.url}/api/v1/executions/{run}", headers=headers, timeout=30).json()["status"]
                for run in accepted
            ]
            if all(state == "COMPLETED" for state in states):
                break
            assert time.monotonic() < deadline, states
            time.sleep(0.5)
        assert Execution.objects.filter(pk__in=accepted, status="COMPLETED").count() == len(accepted)
    finally:
        worker.stop()
        replacement.stop()
