"""Static files under daphne in production settings: collectstatic, then whitenoise serves the
hashed (manifest) names with a far-future cache header. (The embedded/development mode serves
them from the finders: tests/console/test_dashboard.py and the browser test cover that.)"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest
from cryptography.fernet import Fernet

from tests.helpers import BASE_DIR, LiveServer, subprocess_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_production_serves_collected_static_files_with_hashed_names(tmp_path):
    production = {
        "DJANGO_ENV": "production",
        "SECRET_KEY": "s" * 64,
        "KAI_SECRET_KEYS": Fernet.generate_key().decode(),
        "ALLOWED_HOSTS": "127.0.0.1",
        "KAI_SECURE_SSL_REDIRECT": "false",
        "KAI_STATIC_ROOT": str(tmp_path),
    }
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0", "-i", "rest_framework"],
        cwd=BASE_DIR,
        env=subprocess_env(**production),
        check=True,
        timeout=120,
    )
    manifest = json.loads((tmp_path / "staticfiles.json").read_text())["paths"]
    hashed = manifest["console/dashboard.js"]
    assert hashed != "console/dashboard.js" and "admin/css/base.css" in manifest

    server = LiveServer(**production)
    try:
        with urllib.request.urlopen(f"{server.url}/static/{hashed}", timeout=10) as response:
            assert response.status == 200 and b"kaiConsole" in response.read()
            assert "immutable" in response.headers["Cache-Control"]
        with urllib.request.urlopen(f"{server.url}/static/{manifest['admin/css/base.css']}", timeout=10) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"{server.url}/dashboard/login", timeout=10) as response:
            page = response.read().decode()
        assert f"/static/{manifest['console/console.css']}" in page  # templates name the hashed file
    finally:
        server.stop()
