"""``kai up`` (what ``make run`` starts) as a test fixture: a fresh database on this machine's
PostgreSQL, the given Redis under a fresh key prefix, a free port; plus small HTTP helpers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from tests.helpers import BASE_DIR, free_port


def call(method: str, url: str, body=None, token: str | None = None, timeout: float = 10):
    request = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def database_connect_kwargs(dbname: str = "postgres") -> dict:
    from kai_platform.env import parse_database_url

    db = parse_database_url(os.environ["DATABASE_URL"])
    return dict(
        dbname=dbname,
        user=db["USER"] or None,
        password=db["PASSWORD"] or None,
        host=db["HOST"] or None,
        port=db["PORT"] or None,
        autocommit=True,
    )


def drop_database(name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(**database_connect_kwargs()) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _migrations_digest() -> str:
    import hashlib

    digest = hashlib.sha1()
    for path in sorted(BASE_DIR.glob("apps/*/migrations/*.py")):
        digest.update(str(path.relative_to(BASE_DIR)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def migrated_template(env: dict) -> str:
    """A database migrated to this checkout's migrations, made once (under an advisory lock, so
    parallel test processes wait for the first) and kept between runs (named by a digest of the
    migration files). A fresh ``kai up`` database is a copy of it: ``kai up`` still runs
    ``migrate``, which then has nothing (or, after a dependency's new migration, little) to do
    instead of a few hundred migrations on every start."""
    import psycopg
    from psycopg import sql

    name = f"kai_test_template_{_migrations_digest()}"
    with psycopg.connect(**database_connect_kwargs()) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", [name])
        try:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
                building = f"{name}_building"
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(building)))
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(building)))
                subprocess.run(
                    [sys.executable, str(BASE_DIR / "manage.py"), "migrate", "--noinput", "-v", "0"],
                    cwd=BASE_DIR,
                    env={**env, "KAI_DB_NAME": building},
                    check=True,
                )
                conn.execute(
                    sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(building), sql.Identifier(name))
                )
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", [name])
    return name


def clone_database(template: str, name: str) -> bool:
    """``name`` as a copy of ``template``, unless ``name`` exists already (False then)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(**database_connect_kwargs()) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            return False
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))
    return True


class KaiUp:
    """One ``python -m kai_platform.cli up`` with its output collected in a thread."""

    def __init__(self, var_dir: Path, *, db_name: str | None = None, prefix: str | None = None, **env):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.db_name = db_name or f"kai_e2e_{uuid.uuid4().hex[:8]}"
        self.fresh_database = db_name is None  # made at start() from the migrated template
        self.prefix = prefix or f"kai-e2e-{uuid.uuid4().hex[:6]}"
        self.var_dir = Path(var_dir)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
        self.env.update(
            KAI_DB_NAME=self.db_name,
            KAI_PORT=str(self.port),
            KAI_ADMIN_PASSWORD="admin-e2e-pass-1",
            KAI_REDIS_PREFIX=self.prefix,
            DJANGO_ENV="development",
            DEBUG="false",
            KAI_VAR_DIR=str(self.var_dir),
            **env,
        )
        self.output: list[str] = []
        self.process: subprocess.Popen | None = None
        self._ready = threading.Event()

    @property
    def state_path(self) -> Path:
        return self.var_dir / "run" / f"supervisor-{self.port}.json"

    def start(self, timeout: float = 90) -> KaiUp:
        if self.fresh_database:  # (a database a test made already, by a restore say, stays as it is)
            clone_database(migrated_template(self.env), self.db_name)
            self.fresh_database = False
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kai_platform.cli", "up"],
            cwd=BASE_DIR,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(timeout):
            self.stop()
            raise AssertionError("kai up did not get ready:\n" + self.tail())
        return self

    def _read(self) -> None:
        for line in self.process.stdout:
            self.output.append(line)
            if "Ctrl-C stops everything" in line:
                self._ready.set()

    def tail(self, n: int = 60) -> str:
        return "".join(self.output[-n:])

    def state(self) -> dict:
        return json.loads(self.state_path.read_text())

    def child_pid(self, name: str) -> int:
        return self.state()["children"][name]["pid"]

    def stop(self, sig=signal.SIGTERM, timeout: float = 60) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise

    def owner_token(self, email: str = "ann@example.com") -> str:
        status, body = call(
            "POST",
            f"{self.base}/api/v1/auth/register",
            {"email": email, "password": "correct-horse-9", "org_name": "Acme"},
        )
        assert status == 201, body
        status, tokens = call("POST", f"{self.base}/api/v1/auth/login", {"email": email, "password": "correct-horse-9"})
        assert status == 200, tokens
        return tokens["access_token"]
