"""Shared by the socket benchmarks B5–B7.

Runner side: daphne started through a shell that raises ``ulimit -n`` to the hard limit first
(10,000 sockets need more descriptors than the default 1,024), on either the product's application
(``bench.asgi_bench``: the product + the bench URL conf) or the bare baselines
(``bench.asgi_sockets``), with extra environment for the benchmark server only.

Child side (``bench/child.py`` runs each module's ``run`` again with a SimpleNamespace): Django
setup, bench users made through the product's services (5 sockets per user is the product's
limit, so K sockets need K/5 users), descriptor limits, RSS of a process, percentiles, and the
asyncio ``websockets`` clients.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

from bench.common import PYTHON, Context, free_port, wait_http

PRODUCT_APP = "bench.asgi_bench:application"
BARE_APP = "bench.asgi_sockets:application"
HUB_PATH = "/api/v1/ws"
CONNECT_CONCURRENCY = 32  # handshakes in flight; twisted's listen backlog is 50


# --- runner side ----------------------------------------------------------------------------
@dataclass
class SocketServer:
    name: str
    port: int
    process: object

    @property
    def pid(self) -> int:
        return self.process.pid

    def ws(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"


def start_daphne(ctx: Context, name: str, app: str, extra_env: dict | None = None, timeout: float = 60) -> SocketServer:
    port = free_port()
    env = {**ctx.env, **(extra_env or {})}
    # exec keeps the pid: the RSS read from /proc/<pid> is daphne's own
    argv = [
        "bash",
        "-c",
        'ulimit -n "$(ulimit -Hn)" && exec "$@"',
        "bash",
        PYTHON,
        "-m",
        "kai_platform.server",
        "-b",
        "127.0.0.1",
        "-p",
        str(port),
        "-v",
        "0",
        app,
    ]
    process = ctx.children.start(name, argv, env, log_path=ctx.log_dir / f"{name}-{port}.log")
    if not wait_http(f"http://127.0.0.1:{port}/health", timeout, process):
        ctx.children.stop(process)
        raise RuntimeError(f"{name} did not answer /health within {timeout:.0f}s (see {ctx.log_dir}/{name}-{port}.log)")
    return SocketServer(name, port, process)


def product_env(max_sockets: int) -> dict:
    """The product's per-IP cap lifted for the bench server only: every client is 127.0.0.1."""
    return {"KAI_WS_MAX_PER_IP": str(max_sockets + 1000)}


# --- child side -----------------------------------------------------------------------------
def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kai_platform.settings")
    import django
    from django.apps import apps

    if not apps.ready:
        django.setup()


def raise_nofile() -> int:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def make_socket_users(organization_id: str, owner_id: str, count: int, tag: str) -> list[str]:
    """``count`` admins of the bench organization (admins receive every event of it), each with a
    JWT: users through the model manager (no password: nothing to hash), memberships through
    ``membership_add``, tokens through ``auth_issue_tokens``. Returns the access tokens."""
    setup_django()
    import secrets

    from django.db import transaction

    from apps.accounts.models import Organization, User
    from apps.accounts.services import auth_issue_tokens, membership_add
    from kai_platform.tenancy.roles import Role

    organization = Organization.objects.get(pk=organization_id)
    owner = User.objects.get(pk=owner_id)
    suffix = secrets.token_hex(3)
    tokens = []
    for index in range(count):
        with transaction.atomic():
            user = User.objects.create_user(email=f"{tag}-{suffix}-{index}@bench.local", password=None)
            membership_add(organization=organization, user=user, role=Role.ADMIN, actor=owner)
        tokens.append(auth_issue_tokens(user=user)["access_token"])
    return tokens


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def settled_rss(pid: int, seconds: float = 2.0) -> int:
    """RSS once it stops moving (sampled every 0.25 s for up to ``seconds`` after a first wait)."""
    time.sleep(0.5)
    last, deadline = rss_bytes(pid), time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = rss_bytes(pid)
        if abs(now - last) < 64 * 1024:
            return now
        last = now
    return last


def percentile(values, q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    index = min(len(values) - 1, max(0, int(round(q * (len(values) - 1)))))
    return values[index]


async def connect(url: str):
    import websockets

    return await websockets.connect(
        url, max_size=None, open_timeout=60, close_timeout=2, ping_interval=None, compression=None
    )


async def open_hub(base_url: str, token: str, events: list[str] | None = None):
    """A hub socket authenticated with ``?token=``; subscribed to ``events`` when given."""
    import orjson

    ws = await connect(f"{base_url}?token={token}")
    hello = orjson.loads(await asyncio.wait_for(ws.recv(), 60))
    if hello.get("type") != "connection_established":
        await ws.close()
        raise RuntimeError(f"hub refused the socket: {hello}")
    if events:
        await ws.send(orjson.dumps({"type": "subscribe", "data": {"events": events}}).decode())
        while True:
            reply = orjson.loads(await asyncio.wait_for(ws.recv(), 60))
            if reply.get("type") == "subscription_confirmed":
                break
            if reply.get("type") in ("subscription_error", "connection_error"):
                raise RuntimeError(f"subscribe refused: {reply}")
    return ws


async def open_many(factory, count: int, concurrency: int = CONNECT_CONCURRENCY) -> list:
    """``count`` sockets from ``factory(index)``, at most ``concurrency`` handshakes at a time."""
    semaphore = asyncio.Semaphore(concurrency)

    async def one(index):
        async with semaphore:
            return await factory(index)

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def close_many(sockets: list) -> None:
    async def one(ws):
        try:
            await ws.close()
        except Exception:  # noqa: BLE001 - already gone
            pass

    for start in range(0, len(sockets), 500):
        await asyncio.gather(*(one(ws) for ws in sockets[start : start + 500]))
