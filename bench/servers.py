"""The three ASGI servers the issue compares, each as ONE process on ``bench.asgi_bench``, access
logs off for all three (daphne's default access log to stdout would otherwise be measured too)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from bench.common import PYTHON, Context, free_port, wait_http

APP = "bench.asgi_bench:application"


def command(server: str, host: str, port: int) -> list[str]:
    if server == "daphne":  # the product's server (kai up): -v 0 turns the access log off
        return [PYTHON, "-m", "kai_platform.server", "-b", host, "-p", str(port), "-v", "0", APP]
    if server == "uvicorn":  # uvicorn[standard]: uvloop + httptools
        return [
            PYTHON,
            "-m",
            "uvicorn",
            APP,
            "--host",
            host,
            "--port",
            str(port),
            "--workers",
            "1",
            "--no-access-log",
            "--log-level",
            "warning",
            "--lifespan",
            "off",
        ]
    if server == "granian":  # asginl: ASGI without lifespan (Django has none)
        return [
            PYTHON,
            "-m",
            "granian",
            "--interface",
            "asginl",
            "--host",
            host,
            "--port",
            str(port),
            "--workers",
            "1",
            "--log-level",
            "warning",
            APP,
        ]
    raise ValueError(server)


def available(server: str) -> bool:
    return importlib.util.find_spec(server) is not None


@dataclass
class Server:
    name: str
    port: int
    process: object

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start(ctx: Context, server: str, timeout: float = 60) -> Server:
    port = free_port()
    process = ctx.children.start(
        server, command(server, "127.0.0.1", port), ctx.env, log_path=ctx.log_dir / f"{server}-{port}.log"
    )
    if not wait_http(f"http://127.0.0.1:{port}/health", timeout, process):
        ctx.children.stop(process)
        raise RuntimeError(
            f"{server} did not answer /health within {timeout:.0f}s (see {ctx.log_dir}/{server}-{port}.log)"
        )
    return Server(server, port, process)


def stop(ctx: Context, server: Server) -> None:
    ctx.children.stop(server.process)
