"""Per-organization request statistics and recent log lines, kept in Redis (shared by every web
replica and worker, bounded, expiring):

- ``<prefix>:perf:<org>:<minute>`` — a hash ``requests``/``errors``/``latency_ms_sum`` and a list
  ``…:lat`` of request latencies (ms, capped at ``KAI_PERF_SAMPLES_PER_MINUTE``), written by the
  request metrics middleware in one pipelined round-trip; kept ``KAI_PERF_RETENTION_MINUTES``.
- ``<prefix>:logs:<org>`` — the newest ``KAI_ORG_LOG_LINES`` structured log records (JSON) of
  the organization, fed by ``OrganizationLogHandler`` (records whose context names an organization).

``system/performance`` reads the window from here; the ``rollup_metrics`` beat task copies
finished minutes into ``MetricRollup`` rows for the ``metrics`` time series.
"""
from __future__ import annotations

import logging
import threading
import time

import orjson

_local = threading.local()


def _redis():
    from django_redis import get_redis_connection

    return get_redis_connection("default")


def _prefix() -> str:
    from django.conf import settings

    return settings.KAI_REDIS_PREFIX


def minute_of(ts: float) -> int:
    return int(ts // 60) * 60


def perf_key(org_id: str, minute: int) -> str:
    return f"{_prefix()}:perf:{org_id}:{minute}"


def record_request(org_id: str, latency_ms: float, status_code: int) -> None:
    """Count one API request of the organization (best effort: Redis down loses the sample)."""
    from django.conf import settings

    minute = minute_of(time.time())
    key = perf_key(org_id, minute)
    ttl = settings.KAI_PERF_RETENTION_MINUTES * 60
    try:
        pipe = _redis().pipeline(transaction=False)
        pipe.hincrby(key, "requests", 1)
        if status_code >= 500:
            pipe.hincrby(key, "errors", 1)
        if status_code >= 400:
            pipe.hincrby(key, "client_errors" if status_code < 500 else "server_errors", 1)
        pipe.hincrbyfloat(key, "latency_ms_sum", round(latency_ms, 3))
        pipe.rpush(f"{key}:lat", round(latency_ms, 2))
        pipe.ltrim(f"{key}:lat", -settings.KAI_PERF_SAMPLES_PER_MINUTE, -1)
        pipe.expire(key, ttl)
        pipe.expire(f"{key}:lat", ttl)
        pipe.sadd(f"{_prefix()}:perf:active:{minute}", org_id)
        pipe.expire(f"{_prefix()}:perf:active:{minute}", ttl)
        pipe.execute()
    except Exception:
        pass


def active_organizations(minutes: int) -> set[str]:
    """Organizations with at least one API request in the last ``minutes`` minutes."""
    now = minute_of(time.time())
    keys = [f"{_prefix()}:perf:active:{now - 60 * i}" for i in range(minutes)]
    try:
        return {m.decode() for m in _redis().sunion(keys)}
    except Exception:
        return set()


def minute_stats(org_id: str, minute: int) -> dict:
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


def window_stats(org_id: str, minutes: int) -> dict:
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
        "latency_ms": {"p50": percentile(latencies, 50), "p90": percentile(latencies, 90),
                       "p95": percentile(latencies, 95), "p99": percentile(latencies, 99),
                       "max": round(max(latencies), 2) if latencies else None,
                       "samples": len(latencies)},
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
            from django.conf import settings

            from kai_platform.logging import JsonFormatter

            line = JsonFormatter().format(record)
            pipe = _redis().pipeline(transaction=False)
            key = log_key(org)
            pipe.lpush(key, line)
            pipe.ltrim(key, 0, settings.KAI_ORG_LOG_LINES - 1)
            pipe.expire(key, settings.KAI_ORG_LOG_RETENTION_SECONDS)
            pipe.execute()
        except Exception:
            pass
        finally:
            _local.busy = False


def recent_logs(org_id: str, *, limit: int = 100, level: str | None = None, logger: str | None = None,
                execution_id: str | None = None, request_id: str | None = None) -> list[dict]:
    """Newest first. ``level`` is a minimum (``WARNING`` gives warnings and errors)."""
    from django.conf import settings

    minimum = logging.getLevelName(level.upper()) if level else 0
    if not isinstance(minimum, int):
        minimum = 0
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
