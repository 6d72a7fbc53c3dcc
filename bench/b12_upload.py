"""B12: a 50 MB upload through ``files/upload`` on ONE daphne process: throughput and the web
process's peak RSS growth during it, beside the same 50 MB body POSTed to ``/bench/sink`` (a bare
Django view that reads the same multipart body in 64 KiB chunks and drops it) on the same server.

The upload must be streamed (capped handler → temporary file → storage), not buffered: PASS when
the RSS growth of the daphne process stays under 20 MB. The throughput ratio is reported beside it.
"""

from __future__ import annotations

import http.client
import os
import threading
import time

from bench import servers as srv
from bench.common import Context, log
from bench.results import INVALID, Row, verdict

SIZE = 50 * 1024 * 1024
CHUNK = 1024 * 1024
RSS_TARGET = 20 * 1024 * 1024
BOUNDARY = "kai-bench-boundary-7c1e"


def _multipart_parts() -> tuple[bytes, bytes, int]:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    return head, tail, len(head) + SIZE + len(tail)


def _body(block: bytes, head: bytes = b"", tail: bytes = b""):
    yield head
    for _ in range(SIZE // CHUNK):
        yield block
    yield tail


def post_streamed(port: int, path: str, headers: dict, body, length: int) -> tuple[int, bytes, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    started = time.perf_counter()
    conn.putrequest("POST", path)
    for key, value in {**headers, "Content-Length": str(length)}.items():
        conn.putheader(key, value)
    conn.endheaders()
    for chunk in body:
        conn.send(chunk)
    response = conn.getresponse()
    payload = response.read()
    elapsed = time.perf_counter() - started
    conn.close()
    return response.status, payload, elapsed


class RssSampler:
    def __init__(self, pid: int):
        import psutil

        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        return sum(p.memory_info().rss for p in [self.process, *self.process.children(recursive=True)])

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(0.01)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)


def _measure(server, path: str, headers: dict, block: bytes, multipart: bool) -> dict:
    head, tail, length = _multipart_parts() if multipart else (b"", b"", SIZE)
    sampler = RssSampler(server.process.pid)
    before = sampler.rss()
    with sampler:
        status, payload, elapsed = post_streamed(server.port, path, headers, _body(block, head, tail), length)
    return {
        "status": status,
        "payload": payload,
        "seconds": elapsed,
        "mb_per_s": SIZE / elapsed / 2**20,
        "rss_before": before,
        "rss_peak": sampler.peak,
        "rss_growth": max(0, sampler.peak - before),
    }


def _fresh_server_runs(ctx: Context, server_name: str, path: str, headers: dict, block: bytes, runs: int) -> list[dict]:
    """``runs`` uploads on a fresh server process (warmed by a GET only): the first shows what the
    first large body costs the process, the next ones the steady state (freed memory reused)."""
    server = srv.start(ctx, server_name)
    try:
        return [_measure(server, path, headers, block, multipart=True) for _ in range(runs)]
    finally:
        srv.stop(ctx, server)


def run(ctx: Context) -> tuple[list[Row], list]:
    auth = {"Authorization": f"Bearer {ctx.bootstrap['access_token']}"}
    multipart = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    block = os.urandom(CHUNK)
    runs = 2 if ctx.quick else 3
    uploads = _fresh_server_runs(ctx, "daphne", "/api/v1/files/upload", {**auth, **multipart}, block, runs)
    sinks = _fresh_server_runs(ctx, "daphne", "/bench/sink", multipart, block, runs)
    other = (
        _fresh_server_runs(ctx, "uvicorn", "/api/v1/files/upload", {**auth, **multipart}, block, runs)
        if srv.available("uvicorn")
        else []
    )
    failed = [u for u in uploads + other if u["status"] != 201] + [s for s in sinks if s["status"] != 200]
    best_upload = max(uploads, key=lambda u: u["mb_per_s"])
    best_sink = max(sinks, key=lambda s: s["mb_per_s"])
    first, steady = uploads[0]["rss_growth"], max(u["rss_growth"] for u in uploads[1:])
    mb = 2**20
    log(
        f"B12: upload {best_upload['mb_per_s']:.1f} MB/s, sink {best_sink['mb_per_s']:.1f} MB/s, RSS growth "
        f"first {first / mb:.1f} MB, then {steady / mb:.1f} MB"
    )
    note = (
        f"daphne: upload runs {[round(u['mb_per_s'], 1) for u in uploads]} MB/s, RSS growth "
        f"{[round(u['rss_growth'] / mb, 1) for u in uploads]} MB (fresh process, then repeats); bare sink "
        f"{[round(s['rss_growth'] / mb, 1) for s in sinks]} MB — Twisted spools the body to a temp file; the "
        "server hands it to the app a chunk per receive() (kai_platform/server/body.py)"
    )
    if other:
        note += (
            f"; uvicorn (reads as the app consumes): upload RSS growth "
            f"{[round(o['rss_growth'] / mb, 1) for o in other]} MB, "
            f"{[round(o['mb_per_s'], 1) for o in other]} MB/s"
        )
    status = verdict(first < RSS_TARGET)
    if failed:
        status = INVALID
        note += f" — a request failed: {[(f['status'], f['payload'][:200]) for f in failed]}"
    return [
        Row(
            id="B12",
            measures="50 MB upload: web RSS growth, fresh daphne",
            target="< 20 MB",
            figure=round(first / mb, 1),
            figure_text=f"{first / mb:.1f} MB (then {steady / mb:.1f})",
            baseline=round(sinks[0]["rss_growth"] / mb, 1),
            baseline_text=f"bare sink {sinks[0]['rss_growth'] / mb:.1f} MB",
            ratio=round(first / max(sinks[0]["rss_growth"], 1), 2),
            ratio_text=f"{first / max(sinks[0]['rss_growth'], 1):.2f}x",
            status=status,
            note=note,
        ),
        Row(
            id="B12 throughput",
            measures="50 MB upload throughput vs bare body sink",
            target="(reported)",
            figure=round(best_upload["mb_per_s"], 1),
            figure_text=f"{best_upload['mb_per_s']:.1f} MB/s",
            baseline=round(best_sink["mb_per_s"], 1),
            baseline_text=f"{best_sink['mb_per_s']:.1f} MB/s",
            ratio=round(best_upload["mb_per_s"] / best_sink["mb_per_s"], 3),
            ratio_text=f"{best_upload['mb_per_s'] / best_sink['mb_per_s']:.2f}x",
            status=INVALID if failed else "INFO",
            note="the upload also sniffs, hashes (sha256), stores the bytes and writes its row, audit and event",
        ),
    ], []
