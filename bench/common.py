"""Shared pieces of the runner: the context handed to every benchmark, child-process bookkeeping,
ports, HTTP polling and database administration."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
RESULTS_DIR = BASE_DIR / "bench" / "results"
PYTHON = sys.executable


def log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float, process: subprocess.Popen | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except Exception:
            time.sleep(0.05)
    return False


class Children:
    """Every child the runner starts, each in its own session so that stopping it also stops its
    own children (prefork pools, server workers). ``stop_all`` runs on exit and on Ctrl-C."""

    def __init__(self):
        self.processes: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], env: dict, log_path: Path | None = None) -> subprocess.Popen:
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL
        process = subprocess.Popen(
            argv,
            cwd=BASE_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        if log_path:
            out.close()
        self.processes.append((name, process))
        return process

    def stop(self, process: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 10.0) -> int | None:
        if process.poll() is None:
            _killpg(process, sig)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                _killpg(process, signal.SIGKILL)
                process.wait()
        _killpg(process, signal.SIGKILL)  # stragglers of its group
        self.processes = [(n, p) for n, p in self.processes if p is not process]
        return process.returncode

    def stop_all(self) -> None:
        for _name, process in list(self.processes):
            if process.poll() is None:
                _killpg(process, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for _name, process in list(self.processes):
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _killpg(process, signal.SIGKILL)
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self.processes = []


def _killpg(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class Context:
    """What every benchmark gets. ``env`` is the environment of the bench servers (DATABASE_URL,
    REDIS_URL, KAI_DB_NAME=<db>, KAI_REDIS_PREFIX, DEBUG=0, ...); ``bootstrap`` holds the
    credentials made by bench/bootstrap.py (access_token, api_key, organization_id, user_id)."""

    env: dict
    db_name: str
    children: Children
    log_dir: Path
    duration: float = 10.0
    warmup: float = 2.0
    connections: int = 32
    quick: bool = False
    with_test: bool = False
    bootstrap: dict = field(default_factory=dict)
    original_env: dict = field(default_factory=dict)
    shared: dict = field(default_factory=dict)  # results benchmarks hand to each other (e.g. the B3 daphne)

    @property
    def pool_max(self) -> int:
        return int(self.env.get("KAI_DB_POOL_MAX", "20"))

    def db_params(self, dbname: str | None = None) -> dict:
        return db_params(self.env["DATABASE_URL"], dbname or self.db_name)

    def run_python(self, *args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [PYTHON, *args], cwd=BASE_DIR, env=env or self.env, capture_output=True, text=True, timeout=timeout
        )


def db_params(database_url: str, dbname: str) -> dict:
    from kai_platform.env import parse_database_url

    db = parse_database_url(database_url)
    params = {
        "dbname": dbname,
        "user": db["USER"] or None,
        "password": db["PASSWORD"] or None,
        "host": db["HOST"] or None,
        "port": db["PORT"] or None,
    }
    return {k: v for k, v in params.items() if v is not None}


def recreate_database(database_url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(**db_params(database_url, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(database_url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(**db_params(database_url, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def with_redis_db(url: str, db: int) -> str:
    """The same Redis with another logical database number (redis://h:p/N or unix://path?db=N)."""
    from urllib.parse import parse_qsl, urlencode, urlparse, urlunparse

    parsed = urlparse(url)
    if parsed.scheme == "unix":
        query = dict(parse_qsl(parsed.query))
        query["db"] = str(db)
        return f"unix://{parsed.path}?{urlencode(query)}"
    return urlunparse(parsed._replace(path=f"/{db}"))
