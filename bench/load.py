"""HTTP load from a second process: ``wrk`` (Debian package; installed by the runner when missing
and apt-get exists) or, as a fallback, the asyncio keep-alive HTTP/1.1 client below, run as
``python -m bench.load URL --connections N --duration S [--header 'K: V']`` and printing JSON.

Both keep ``connections`` requests in flight for ``duration`` seconds over keep-alive connections
and report requests/s, non-2xx answers, socket errors and latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from urllib.parse import urlparse


@dataclass
class LoadResult:
    tool: str
    rps: float
    requests: int
    non_2xx: int
    errors: int
    p50_ms: float | None
    p99_ms: float | None
    duration: float

    @property
    def ok(self) -> bool:
        return self.requests > 0 and self.non_2xx == 0 and self.errors == 0


def ensure_wrk() -> str | None:
    """The path of wrk, installing the Debian package when it is missing and apt-get exists."""
    path = shutil.which("wrk")
    if path or not shutil.which("apt-get"):
        return path
    for argv in (
        ["apt-get", "install", "-y", "-q", "wrk"],
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "wrk"],
    ):
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        if shutil.which("wrk"):
            break
    return shutil.which("wrk")


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * _UNITS[unit]


def run_wrk(wrk: str, url: str, headers: dict, connections: int, duration: float, threads: int = 1) -> LoadResult:
    argv = [
        wrk,
        "-t",
        str(min(threads, connections)),
        "-c",
        str(connections),
        "-d",
        f"{max(1, round(duration))}s",
        "--latency",
        "--timeout",
        "10s",
    ]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    out = subprocess.run([*argv, url], capture_output=True, text=True, timeout=duration + 60).stdout
    requests = int(re.search(r"(\d+) requests in ([\d.]+)(\w+)", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    p50 = re.search(r"\s50%\s+([\d.]+\w+)", out)
    p99 = re.search(r"\s99%\s+([\d.]+\w+)", out)
    return LoadResult(
        tool="wrk",
        rps=rps,
        requests=requests,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        errors=sum(int(g) for g in errors.groups()) if errors else 0,
        p50_ms=_ms(p50.group(1)) if p50 else None,
        p99_ms=_ms(p99.group(1)) if p99 else None,
        duration=duration,
    )


def run_python(url: str, headers: dict, connections: int, duration: float) -> LoadResult:
    argv = [sys.executable, "-m", "bench.load", url, "--connections", str(connections), "--duration", str(duration)]
    for name, value in headers.items():
        argv += ["--header", f"{name}: {value}"]
    from bench.common import BASE_DIR

    out = subprocess.run(argv, cwd=BASE_DIR, capture_output=True, text=True, timeout=duration + 60, check=True).stdout
    return LoadResult(**json.loads(out))


def run_load(
    url: str,
    headers: dict | None = None,
    connections: int = 32,
    duration: float = 10.0,
    threads: int = 1,
    force_python: bool = False,
) -> LoadResult:
    headers = headers or {}
    wrk = None if force_python else ensure_wrk()
    if wrk:
        return run_wrk(wrk, url, headers, connections, duration, threads)
    return run_python(url, headers, connections, duration)


# --- the asyncio fallback ----------------------------------------------------------------------


async def _connection(host: str, port: int, request: bytes, stop_at: float, stats: dict) -> None:
    reader = writer = None
    while time.monotonic() < stop_at:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            started = time.perf_counter()
            writer.write(request)
            status_line = await reader.readline()
            status = int(status_line.split()[1])
            length, close = 0, False
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "connection" and value.strip().lower() == "close":
                    close = True
            if length:
                await reader.readexactly(length)
            stats["latencies"].append(time.perf_counter() - started)
            stats["requests"] += 1
            if not 200 <= status < 300:
                stats["non_2xx"] += 1
            if close:
                writer.close()
                writer = None
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
            stats["errors"] += 1
            if writer is not None:
                writer.close()
            writer = None
            await asyncio.sleep(0.01)
    if writer is not None:
        writer.close()


async def _main(url: str, headers: dict, connections: int, duration: float) -> dict:
    parsed = urlparse(url)
    target = parsed.path + (f"?{parsed.query}" if parsed.query else "")
    lines = [
        f"GET {target} HTTP/1.1",
        f"Host: {parsed.netloc}",
        "Connection: keep-alive",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    stats = {"requests": 0, "non_2xx": 0, "errors": 0, "latencies": []}
    started = time.monotonic()
    await asyncio.gather(
        *(
            _connection(parsed.hostname, parsed.port or 80, request, started + duration, stats)
            for _ in range(connections)
        )
    )
    elapsed = time.monotonic() - started
    latencies = sorted(stats["latencies"])

    def pct(p):
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else None

    return asdict(
        LoadResult(
            tool="python-asyncio",
            rps=stats["requests"] / elapsed,
            requests=stats["requests"],
            non_2xx=stats["non_2xx"],
            errors=stats["errors"],
            p50_ms=pct(0.5),
            p99_ms=pct(0.99),
            duration=elapsed,
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--header", action="append", default=[])
    args = parser.parse_args()
    headers = dict(h.split(": ", 1) for h in args.header)
    print(json.dumps(asyncio.run(_main(args.url, headers, args.connections, args.duration))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
