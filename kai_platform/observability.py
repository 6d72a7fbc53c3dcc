"""Per-organization request statistics and recent log lines, kept in Redis (shared by every web
replica and worker, bounded, expiring):

- ``<prefix>:perf:<org>:<minute>`` — a hash ``requests``/``errors``/``latency_ms_sum`` and a list
  ``…:lat`` of request latencies (ms, capped at ``KAI_PERF_SAMPLES_PER_MINUTE``), recorded by the
  request metrics middleware; kept ``KAI_PERF_RETENTION_MINUTES``.
- ``<prefix>:logs:<org>`` — the newest ``KAI_ORG_LOG_LINES`` structured log records (JSON) of
  the organization, fed by ``OrganizationLogHandler`` (records whose context names an organization).

Both are buffered per process and written by one thread each second in one pipeline (``_Batcher``):
no Redis round trip on the request's (or the run's) own path.

``system/performance`` reads the window from here; the ``rollup_metrics`` beat task copies
finished minutes into ``MetricRollup`` rows for the ``metrics`` time series.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

import orjson
from django.conf import settings
from django_redis import get_redis_connection

from kai_platform.logging import JsonFormatter

if TYPE_CHECKING:
    from redis import Redis

_local = threading.local()


def _redis() -> Redis:
    client: Redis = get_redis_connection("default")
    return client


def _prefix() -> str:
    return settings.KAI_REDIS_PREFIX


def minute_of(ts: float) -> int:
    return int(ts // 60) * 60


def perf_key(org_id: str, minute: int) -> str:
    return f"{_prefix()}:perf:{org_id}:{minute}"


class _Batcher:
    """Request samples and log lines are buffered per process and written to Redis by one
    background thread every ``KAI_PERF_FLUSH_SECONDS`` (default 1 s) in ONE pipeline, instead of
    a pipelined round trip per request and per log line on the request's own thread (bench B1/B3,
    docs/benchmarks.md). Readers flush their own process's
    buffer first, so a process always reads what it wrote; other processes' samples show up
    within the flush interval. Best effort: a sample lost on a crash or while Redis is down is
    only a statistic."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid: int | None = None
        self.requests: dict[tuple[str, int], dict[str, Any]] = {}
        self.logs: dict[str, list[str]] = {}
        self.wake = threading.Event()

    def _ensure_thread(self) -> None:
        if self.pid != os.getpid():  # first use, or a forked child: its own thread
            self.pid = os.getpid()
            self.lock = threading.Lock()
            self.requests, self.logs = {}, {}
            threading.Thread(target=self._loop, name="kai-observability-flush", daemon=True).start()

    def _loop(self) -> None:
        while True:
            self.wake.wait(getattr(settings, "KAI_PERF_FLUSH_SECONDS", 1.0))
            self.wake.clear()
            self.flush()

    def add_request(self, org_id: str, minute: int, latency_ms: float, status_code: int) -> None:
        self._ensure_thread()
        with self.lock:
            entry = self.requests.setdefault(
                (org_id, minute),
                {"requests": 0, "errors": 0, "client_errors": 0, "server_errors": 0, "latency_ms_sum": 0.0, "lat": []},
            )
            entry["requests"] += 1
            if status_code >= 500:
                entry["errors"] += 1
            if status_code >= 400:
                entry["client_errors" if status_code < 500 else "server_errors"] += 1
            entry["latency_ms_sum"] += round(latency_ms, 3)
            entry["lat"].append(round(latency_ms, 2))

    def add_log(self, org_id: str, line: str) -> None:
        self._ensure_thread()
        with self.lock:
            self.logs.setdefault(org_id, []).append(line)

    def flush(self) -> None:
        with self.lock:
            requests, logs = self.requests, self.logs
            self.requests, self.logs = {}, {}
        if not requests and not logs:
            return
        try:
            pipe = _redis().pipeline(transaction=False)
            ttl = settings.KAI_PERF_RETENTION_MINUTES * 60
            for (org_id, minute), entry in requests.items():
                key = perf_key(org_id, minute)
                for name in ("requests", "errors", "client_errors", "server_errors"):
                    if entry[name]:
                        pipe.hincrby(key, name, entry[name])
                pipe.hincrbyfloat(key, "latency_ms_sum", round(entry["latency_ms_sum"], 3))
                pipe.rpush(f"{key}:lat", *entry["lat"])
                pipe.ltrim(f"{key}:lat", -settings.KAI_PERF_SAMPLES_PER_MINUTE, -1)
                pipe.expire(key, ttl)
                pipe.expire(f"{key}:lat", ttl)
                pipe.sadd(f"{_prefix()}:perf:active:{minute}", org_id)
                pipe.expire(f"{_prefix()}:perf:active:{minute}", ttl)
            for org_id, lines in logs.items():
                key = log_key(org_id)
                pipe.lpush(key, *lines)
                pipe.ltrim(key, 0, settings.KAI_ORG_LOG_LINES - 1)
                pipe.expire(key, settings.KAI_ORG_LOG_RETENTION_SECONDS)
            pipe.execute()
        except Exception:
            pass


_batcher = _Batcher()


def flush() -> None:
    """Write this process's buffered samples and log lines now (readers call it first)."""
    if _batcher.pid is not None:
        _batcher.flush()


def record_request(org_id: str, latency_ms: float, status_code: int) -> None:
    """Count one API request of the organization (buffered; see ``_Batcher``)."""
    _batcher.add_request(org_id, minute_of(time.time()), latency_ms, status_code)


def active_organizations(minutes: int) -> set[str]:
    """Organizations with at least one API request in the last ``minutes`` minutes."""
    flush()
    now = minute_of(time.time())
    keys = [f"{_prefix()}:perf:active:{now - 60 * i}" for i in range(minutes)]
    try:
        return {m.decode() if isinstance(m, bytes) else m for m in _redis().sunion(keys)}
    except Exception:
        return set()


def minute_stats(org_id: str, minute: int) -> dict[str, Any]:
    flush()
    pipe = _redis().pipeline(transaction=False)
    key = perf_key(org_id, minute)
    pipe.hgetall(key)
    pipe.lrange(f"{key}:lat", 0, -1)
    counters, latencies = pipe.execute()
    counters = {k.decode(): float(v) for k, v in counters.items()}
    return {
        "requests": int(counters.get("requests", 0)),
        "errors": int(counters.get("errors", 0)),
        "client_errors": int(counters.get("client_errors", 0)),
        "latency_ms_sum": counters.get("latency_ms_sum", 0.0),
        "latencies": [float(v) for v in latencies],
    }


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return round(ordered[rank - 1], 2)


def window_stats(org_id: str, minutes: int) -> dict[str, Any]:
    """Request latency percentiles, throughput and error rate over the last ``minutes`` minutes
    (the current minute included)."""
    now = time.time()
    current = minute_of(now)
    requests = errors = client_errors = 0
    latencies: list[float] = []
    try:
        for i in range(minutes):
            stats = minute_stats(org_id, current - 60 * i)
            requests += stats["requests"]
            errors += stats["errors"]
            client_errors += stats["client_errors"]
            latencies += stats["latencies"]
        available = True
    except Exception:
        available = False
    elapsed = max(1.0, (minutes - 1) * 60 + (now - current))
    return {
        "window_minutes": minutes,
        "available": available,
        "requests": requests,
        "errors": errors,
        "client_errors": client_errors,
        "throughput_rpm": round(requests / elapsed * 60, 3),
        "error_rate": round(errors / requests, 4) if requests else 0.0,
        "latency_ms": {
            "p50": percentile(latencies, 50),
            "p90": percentile(latencies, 90),
            "p95": percentile(latencies, 95),
            "p99": percentile(latencies, 99),
            "max": round(max(latencies), 2) if latencies else None,
            "samples": len(latencies),
        },
    }


# --- organization log lines --------------------------------------------------------------------


def log_key(org_id: str) -> str:
    return f"{_prefix()}:logs:{org_id}"


class OrganizationLogHandler(logging.Handler):
    """Keeps the newest log records of each organization in a bounded Redis list, for
    ``GET system/logs``. Needs ``RequestContextFilter`` on the handler (it reads its fields).
    Best effort and re-entrancy safe: a Redis failure never breaks the code that logged."""

    def emit(self, record: logging.LogRecord) -> None:
        org = getattr(record, "organization", "-")
        if not org or org == "-" or getattr(_local, "busy", False):
            return
        _local.busy = True
        try:
            _batcher.add_log(org, JsonFormatter().format(record))
        except Exception:
            pass
        finally:
            _local.busy = False


def recent_logs(
    org_id: str,
    *,
    limit: int = 100,
    level: str | None = None,
    logger: str | None = None,
    execution_id: str | None = None,
    request_id: str | None = None,
) -> list[dict[str, Any]]:
    """Newest first. ``level`` is a minimum (``WARNING`` gives warnings and errors)."""
    minimum = logging.getLevelName(level.upper()) if level else 0
    if not isinstance(minimum, int):
        minimum = 0
    flush()
    lines = _redis().lrange(log_key(org_id), 0, settings.KAI_ORG_LOG_LINES - 1)
    out = []
    for raw in lines:
        try:
            entry = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        levelno = logging.getLevelName(entry.get("level", "INFO"))
        if isinstance(levelno, int) and levelno < minimum:
            continue
        if logger and not str(entry.get("logger", "")).startswith(logger):
            continue
        if execution_id and entry.get("execution_id") != execution_id:
            continue
        if request_id and entry.get("request_id") != request_id:
            continue
        out.append(entry)
        if len(out) >= limit:
            break
    return out
