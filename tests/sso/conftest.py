"""Real identity providers for the SSO tests, each a process of its own on a free port."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx2 as httpx
import pytest

from tests.helpers import BASE_DIR, free_port, subprocess_env

CLIENT_ID = "kai-platform"
CLIENT_SECRET = "idp-client-secret-0123456789"


@dataclass
class OIDCProvider:
    url: str  # what the platform and the browser use: http://localhost:PORT (own cookie jar)
    process: subprocess.Popen

    @property
    def issuer(self) -> str:
        return f"{self.url}/o"

    def control(self, **body) -> None:
        httpx.post(f"{self.url}/control", json={"client_id": CLIENT_ID, **body}, timeout=10).raise_for_status()

    def add_user(self, username: str, email: str, password: str = "idp-pass-123", groups=(), name="") -> None:
        self.control(
            user={"username": username, "email": email, "password": password, "groups": list(groups), "name": name}
        )


def _rsa_key(path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


@pytest.fixture(scope="module")
def oidc_idp(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("oidc-idp")
    _rsa_key(tmp / "key.pem")
    port = free_port()
    env = subprocess_env(IDP_DB=str(tmp / "idp.sqlite3"), IDP_KEY=str(tmp / "key.pem"))
    env.pop("DJANGO_SETTINGS_MODULE", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.sso.oidc_idp.serve", str(port), CLIENT_ID, CLIENT_SECRET],
        cwd=BASE_DIR,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / "idp.log", "wb"),
    )
    provider = OIDCProvider(url=f"http://localhost:{port}", process=process)
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{provider.issuer}/.well-known/openid-configuration", timeout=1).raise_for_status()
            break
        except httpx.HTTPError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((tmp / "idp.log").read_text()[-3000:])
            time.sleep(0.1)
    yield provider
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


@pytest.fixture(scope="module")
def kai_server(shared_live_server):
    """A real daphne: the xdist worker's shared one (it keeps no state of its own)."""
    return shared_live_server


def idp_sign_in(client: httpx.Client, page: httpx.Response, username: str, password: str) -> httpx.Response:
    """Fill the IdP's login form the way a person would (CSRF token included)."""
    assert page.status_code == 200 and "csrfmiddlewaretoken" in page.text, page.text[:500]
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    return client.post(
        str(page.url),
        data={"csrfmiddlewaretoken": token, "username": username, "password": password},
        headers={"Referer": str(page.url)},
    )
