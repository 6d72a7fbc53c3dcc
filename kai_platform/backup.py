"""Online backup and restore of a platform: the database (``pg_dump`` custom format, one
consistent snapshot taken while the platform serves), the media files, the secret key file
(without which no stored credential can be decrypted) and a manifest with versions and sha256
checksums.

    python -m kai_platform.cli backup --to DIR
    python -m kai_platform.cli restore --from DIR   # into an empty database and an empty var/

The database is the embedded one (``var/pgdata``) unless ``DATABASE_URL`` names another; the
``pg_dump``/``pg_restore`` used are the ones matching the server's major version (pgserver's
bundled binaries, ``/usr/lib/postgresql/<major>/bin`` or the ``PATH``'s).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import django
import psycopg
from django.conf import settings
from psycopg import sql

FORMAT = 1
DUMP, MEDIA, KEYS, MANIFEST = "database.dump", "media.tar", "secret.keys", "manifest.json"
#: gzip level of the dump (pg_dump's default is 6): level 1 writes most of the time saved at a
#: slightly larger file (figures in docs/operations.md)
COMPRESS = 1


def restore_jobs() -> int:
    """Parallel pg_restore jobs (tables loaded and indexes built side by side): the cores, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


class BackupError(Exception):
    """A backup or restore that cannot go on; the message says why and what to do."""


# --- the database's connection and tools -----------------------------------------------------


def _db() -> dict[str, Any]:
    return settings.DATABASES["default"]


def _pg_env(db: dict[str, Any], dbname: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(PGDATABASE=dbname or db["NAME"], PGUSER=db.get("USER") or "postgres")
    if db.get("HOST"):
        env["PGHOST"] = str(db["HOST"])
    if db.get("PORT"):
        env["PGPORT"] = str(db["PORT"])
    if db.get("PASSWORD"):
        env["PGPASSWORD"] = str(db["PASSWORD"])
    return env


def _connect(dbname: str | None = None) -> psycopg.Connection[tuple[Any, ...]]:
    db = _db()
    return psycopg.connect(
        dbname=dbname or db["NAME"],
        user=db.get("USER") or None,
        password=db.get("PASSWORD") or None,
        host=db.get("HOST") or None,
        port=db.get("PORT") or None,
        autocommit=True,
    )


def _scalar(conn: psycopg.Connection[tuple[Any, ...]], query: str) -> Any:
    """The one value of a query that always returns one row (SHOW, an aggregate, to_regclass)."""
    row = conn.execute(query).fetchone()
    assert row is not None, query
    return row[0]


def server_version() -> tuple[int, str]:
    """(major, full version string) of the configured server."""
    with _connect("postgres") as conn:
        num = int(_scalar(conn, "SHOW server_version_num"))
        full = str(_scalar(conn, "SHOW server_version"))
    return num // 10000, full


def _tool_major(path: str) -> int | None:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
    except OSError:
        return None
    match = re.search(r"(\d+)(?:\.\d+)?", out)
    return int(match.group(1)) if match else None


def find_tool(name: str, major: int) -> str:
    """``pg_dump``/``pg_restore`` of the server's major version; a newer one if none matches
    (both read and write older servers' formats); an older one never."""
    candidates = []
    try:
        import pgserver  # deferred: optional — the embedded PostgreSQL's tools, when installed

        candidates.append(str(Path(pgserver.__file__).parent / "pginstall" / "bin" / name))
    except ImportError:
        pass
    candidates.append(f"/usr/lib/postgresql/{major}/bin/{name}")
    candidates += sorted((str(p) for p in Path("/usr/lib/postgresql").glob(f"*/bin/{name}")), reverse=True)
    if found := shutil.which(name):
        candidates.append(found)
    versions = {path: _tool_major(path) for path in dict.fromkeys(candidates) if Path(path).exists()}
    exact = [p for p, v in versions.items() if v == major]
    newer = sorted((p for p, v in versions.items() if v and v > major), key=lambda p: versions[p] or 0)
    if exact or newer:
        return (exact or newer)[0]
    raise BackupError(
        f"no {name} for PostgreSQL {major} (found: {versions or 'none'}); install postgresql-client-{major}"
    )


# --- checksums and the manifest -------------------------------------------------------------


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _versions(pg_full: str, dump_tool: str) -> dict[str, Any]:
    try:
        kai = metadata.version("kai-platform")
    except metadata.PackageNotFoundError:
        kai = "0.0.0"

    return {
        "kai": kai,
        "django": django.get_version(),
        "python": platform.python_version(),
        "postgresql": pg_full,
        "pg_dump": subprocess.run([dump_tool, "--version"], capture_output=True, text=True).stdout.strip(),
    }


def _migrations() -> dict[str, Any]:
    """The newest applied migration of each app: what the restored code must at least know."""
    with _connect() as conn:
        if not _scalar(conn, "SELECT to_regclass('django_migrations')"):
            return {}  # a database never migrated
        rows = conn.execute("SELECT app, max(name) FROM django_migrations GROUP BY app ORDER BY app").fetchall()
    return dict(rows)


# --- backup -----------------------------------------------------------------------------------


def backup(*, to: Path, log: Callable[[str], object] = print) -> dict[str, Any]:
    """Write a backup of the running (or stopped) platform into the new or empty directory ``to``."""
    to = Path(to)
    if to.exists() and any(to.iterdir()):
        raise BackupError(f"{to} is not empty: back up into a new directory")
    to.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    major, full = server_version()
    pg_dump = find_tool("pg_dump", major)
    db = _db()
    log(f"dumping database {db['NAME']} (PostgreSQL {full}) with {pg_dump}")
    subprocess.run(
        [pg_dump, "--format=custom", f"--compress={COMPRESS}", "--file", str(to / DUMP)], env=_pg_env(db), check=True
    )
    files = {DUMP: to / DUMP}
    media_count = 0
    if settings.KAI_STORAGE_BACKEND == "filesystem" and Path(settings.MEDIA_ROOT).is_dir():
        with tarfile.open(to / MEDIA, "w") as tar:
            for path in sorted(Path(settings.MEDIA_ROOT).rglob("*")):
                if path.is_file():
                    tar.add(path, arcname=str(path.relative_to(settings.MEDIA_ROOT)), recursive=False)
                    media_count += 1
        files[MEDIA] = to / MEDIA
    keys_source = "environment (KAI_SECRET_KEYS: keep it with the backup)" if settings.KAI_SECRET_KEYS else "file"
    if not settings.KAI_SECRET_KEYS and Path(settings.KAI_SECRET_KEYS_FILE).exists():
        shutil.copyfile(settings.KAI_SECRET_KEYS_FILE, to / KEYS)
        os.chmod(to / KEYS, 0o600)
        files[KEYS] = to / KEYS
    manifest = {
        "format": FORMAT,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "database": db["NAME"],
        "versions": _versions(full, pg_dump),
        "migrations": _migrations(),
        "storage": settings.KAI_STORAGE_BACKEND,
        "media_files": media_count,
        "secret_keys": keys_source,
        "files": {name: {"bytes": path.stat().st_size, "sha256": sha256(path)} for name, path in files.items()},
        "seconds": round(time.monotonic() - started, 2),
    }
    (to / MANIFEST).write_text(json.dumps(manifest, indent=2))
    log(
        f"backup written to {to} in {manifest['seconds']} s: "
        + ", ".join(f"{n} {f['bytes']:,} bytes" for n, f in manifest["files"].items())
    )
    return manifest


# --- restore ----------------------------------------------------------------------------------


def verify(source: Path) -> dict[str, Any]:
    """The manifest of a complete, unaltered backup (every checksum matches)."""
    try:
        manifest: dict[str, Any] = json.loads((Path(source) / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise BackupError(f"{source} holds no readable {MANIFEST}: {exc}")
    if manifest.get("format") != FORMAT:
        raise BackupError(f"backup format {manifest.get('format')} is not {FORMAT}")
    for name, expected in manifest["files"].items():
        path = Path(source) / name
        if not path.exists() or sha256(path) != expected["sha256"]:
            raise BackupError(f"{name} is missing or does not match its checksum: the backup is damaged")
    return manifest


def _ensure_empty_database() -> None:
    name = _db()["NAME"]
    with _connect("postgres") as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            return
    with _connect() as conn:
        tables = _scalar(conn, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
    if tables:
        raise BackupError(f"database {name} already has {tables} tables: restore needs an empty database")


def restore(*, source: Path, log: Callable[[str], object] = print) -> dict[str, Any]:
    """Restore the backup in ``source`` into the configured (empty) database, media directory and
    secret key file."""
    source = Path(source)
    started = time.monotonic()
    manifest = verify(source)
    media_root, keys_file = Path(settings.MEDIA_ROOT), Path(settings.KAI_SECRET_KEYS_FILE)
    if MEDIA in manifest["files"] and media_root.is_dir() and any(media_root.iterdir()):
        raise BackupError(f"{media_root} is not empty: restore needs an empty media directory")
    if KEYS in manifest["files"] and keys_file.exists() and sha256(keys_file) != manifest["files"][KEYS]["sha256"]:
        raise BackupError(f"{keys_file} exists with other keys: move it away first")
    _ensure_empty_database()
    major, full = server_version()
    pg_restore = find_tool("pg_restore", major)
    log(f"restoring into database {_db()['NAME']} (PostgreSQL {full}) with {pg_restore}")
    subprocess.run(
        [
            pg_restore,
            "--exit-on-error",
            "--no-owner",
            "--no-privileges",
            f"--jobs={restore_jobs()}",
            "--dbname",
            _db()["NAME"],
            str(source / DUMP),
        ],
        env=_pg_env(_db()),
        check=True,
    )
    if MEDIA in manifest["files"]:
        media_root.mkdir(parents=True, exist_ok=True)
        with tarfile.open(source / MEDIA) as tar:
            tar.extractall(media_root, filter="data")
    if KEYS in manifest["files"] and not keys_file.exists():
        keys_file.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / KEYS, keys_file)
        os.chmod(keys_file, 0o600)
    seconds = round(time.monotonic() - started, 2)
    log(f"restored {source} in {seconds} s ({manifest['media_files']} media files)")
    return {**manifest, "restore_seconds": seconds}
