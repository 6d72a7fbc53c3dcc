"""``kai backup`` of a running ``make run`` (runs, a file, a credential) and ``kai restore`` into a
fresh var/ and a fresh database: the restored platform serves the same data, the same file bytes,
and decrypts the same credential. A damaged backup or a non-empty target is refused."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx2 as httpx
import pytest

from tests.helpers import BASE_DIR
from tests.launcher import KaiUp, call, drop_database

pytestmark = pytest.mark.slow
SECRET = "sk-restore-me-0123456789"
PAYLOAD = b"%PDF-1.4 quarterly numbers\n" + bytes(range(256)) * 40


def _cli(up: KaiUp, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kai_platform.cli", *args],
        cwd=BASE_DIR,
        env=up.env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _seed(up: KaiUp, token: str) -> dict:
    headers = {"Authorization": f"Bearer {token}"}
    status, agent = call("POST", f"{up.base}/api/v1/agents", {"name": "Archivist"}, token)
    assert status == 201, agent
    status, run = call(
        "POST", f"{up.base}/api/v1/executions", {"agent_id": agent["id"], "description": "summarise the archive"}, token
    )
    assert status == 202, run
    deadline = time.monotonic() + 30
    while call("GET", f"{up.base}/api/v1/executions/{run['execution_id']}", token=token)[1]["status"] != "COMPLETED":
        assert time.monotonic() < deadline, "the run did not complete"
        time.sleep(0.3)
    uploaded = httpx.post(
        f"{up.base}/api/v1/files/upload",
        headers=headers,
        files={"file": ("numbers.pdf", PAYLOAD, "application/pdf")},
        timeout=10,
    )
    assert uploaded.status_code == 201, uploaded.text
    status, credential = call(
        "POST",
        f"{up.base}/api/v1/credentials",
        {"service_name": "openai", "credential_type": "api_key", "credential_data": {"value": SECRET}},
        token,
    )
    assert status == 201, credential
    return {
        "agent": agent["id"],
        "run": run["execution_id"],
        "file": uploaded.json()["files"][0]["id"],
        "credential": credential["id"],
    }


def test_backup_of_a_running_platform_restores_into_a_fresh_var_and_database(tmp_path):
    source = KaiUp(tmp_path / "var")
    target = KaiUp(tmp_path / "fresh-var")
    backup_dir = tmp_path / "backup"
    try:
        source.start()
        token = source.owner_token()
        ids = _seed(source, token)
        status, run_before = call("GET", f"{source.base}/api/v1/executions/{ids['run']}", token=token)

        done = _cli(source, "backup", "--to", str(backup_dir))  # online: the platform keeps serving
        assert done.returncode == 0, done.stdout + done.stderr
        assert call("GET", f"{source.base}/health")[0] == 200
        manifest = json.loads((backup_dir / "manifest.json").read_text())
        assert set(manifest["files"]) == {"database.dump", "media.tar", "secret.keys"}, manifest
        assert manifest["media_files"] == 1 and manifest["versions"]["postgresql"] and manifest["migrations"]["crews"]
        assert all(len(f["sha256"]) == 64 for f in manifest["files"].values())
        assert (backup_dir / "secret.keys").stat().st_mode & 0o077 == 0
        assert _cli(source, "backup", "--to", str(backup_dir)).returncode == 2  # never over a backup
        source.stop()

        restored = _cli(target, "restore", "--from", str(backup_dir))
        assert restored.returncode == 0, restored.stdout + restored.stderr
        again = _cli(target, "restore", "--from", str(backup_dir))
        assert again.returncode == 2 and "restore needs an empty" in again.stdout, again.stdout

        target.start()
        status, tokens = call(
            "POST", f"{target.base}/api/v1/auth/login", {"email": "ann@example.com", "password": "correct-horse-9"}
        )
        assert status == 200, tokens
        token = tokens["access_token"]
        status, run_after = call("GET", f"{target.base}/api/v1/executions/{ids['run']}", token=token)
        assert status == 200 and run_after["status"] == "COMPLETED"
        assert run_after["result"] == run_before["result"] and run_after["trace_id"] == run_before["trace_id"]
        download = httpx.get(
            f"{target.base}/api/v1/files/{ids['file']}/download",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert download.status_code == 200 and download.content == PAYLOAD
        status, verified = call(
            "POST",
            f"{target.base}/api/v1/credentials/verify",
            {"credential_id": ids["credential"], "value": SECRET},
            token,
        )
        assert status == 200 and verified["decryptable"] is True and verified["matches"] is True, verified
    finally:
        source.stop()
        target.stop()
        drop_database(source.db_name)
        drop_database(target.db_name)


def test_a_damaged_backup_is_refused(tmp_path):
    backup_dir = tmp_path / "backup"
    backup_dir.mkdir()
    (backup_dir / "database.dump").write_bytes(b"not a dump")
    (backup_dir / "manifest.json").write_text(
        json.dumps({"format": 1, "media_files": 0, "files": {"database.dump": {"bytes": 10, "sha256": "0" * 64}}})
    )
    target = KaiUp(tmp_path / "var")
    done = _cli(target, "restore", "--from", str(backup_dir))
    assert done.returncode == 2 and "does not match its checksum" in done.stdout, done.stdout + done.stderr
