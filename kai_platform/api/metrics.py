"""Prometheus metrics (``/metrics``): request latency by route, and platform gauges read at
scrape time — runs by status, queue depth, live workers, open sockets, LLM tokens and cost.

Gauges come from the database and Redis when scraped (a custom collector), so every web
replica reports the same platform-wide figures; request histograms are per process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from django.apps import apps
from django.conf import settings
from django.db.models import Count, Sum
from django.db.models.fields.json import KeyTextTransform
from django_redis import get_redis_connection
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from kai_platform.logging import request_state
from kai_platform.observability import record_request

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponseBase
    from redis import Redis

logger = logging.getLogger(__name__)

REGISTRY = CollectorRegistry()

REQUEST_LATENCY = Histogram(
    "kai_http_request_duration_seconds",
    "HTTP request latency by route.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)


def _route_of(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return "unmatched"
    return (match.route or match.view_name or "unknown")[:120]


class RequestMetricsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    """Observes every request in the route histogram, and counts the API requests of an
    organization in Redis (``kai_platform.observability``: system/performance, metrics series)."""

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        started = time.perf_counter()
        response = self.get_response(request)
        if request.path_info != "/metrics":
            elapsed = time.perf_counter() - started
            REQUEST_LATENCY.labels(request.method, _route_of(request), f"{response.status_code // 100}xx").observe(
                elapsed
            )
            organization = request_state().get("organization")
            if organization and organization != "-":
                record_request(organization, elapsed * 1000, response.status_code)
        return response


class PlatformCollector:
    """Platform-wide gauges, computed at scrape time (never at import or registration)."""

    def describe(self) -> Iterable[Metric]:
        return []  # names are dynamic; registering must not run the queries

    def collect(self) -> Iterator[Metric]:
        yield from self._safely(self._runs)
        yield from self._safely(self._redis)
        yield from self._safely(self._llm_usage)

    def _safely(self, producer: Callable[[], Iterator[Metric]]) -> Iterator[Metric]:
        try:
            yield from producer()
        except Exception:  # a scrape must not fail because one source is down
            logger.warning("metrics source %s failed", producer.__name__, exc_info=True)

    def _runs(self) -> Iterator[Metric]:
        if not apps.is_installed("apps.runs"):
            return

        Execution = apps.get_model("runs", "Execution")
        family = GaugeMetricFamily("kai_runs", "Executions by status.", labels=["status"])
        for row in Execution.objects.values("status").annotate(n=Count("id")).order_by():
            family.add_metric([row["status"]], row["n"])
        yield family

    def _redis(self) -> Iterator[Metric]:
        redis: Redis = get_redis_connection("default")
        prefix = settings.KAI_REDIS_PREFIX
        beats = worker_heartbeats(redis)
        yield GaugeMetricFamily("kai_workers_alive", "Celery workers with a fresh heartbeat.", value=len(beats))
        ages = GaugeMetricFamily(
            "kai_worker_heartbeat_age_seconds", "Seconds since each live worker's last heartbeat.", labels=["worker"]
        )
        for worker, age in sorted(beats.items()):
            ages.add_metric([worker], age)
        yield ages
        queues = GaugeMetricFamily("kai_queue_depth", "Messages waiting per Celery queue.", labels=["queue"])
        for queue, depth in queue_depths(redis).items():
            queues.add_metric([queue], depth)
        yield queues
        now = time.time()
        sockets = 0
        for key in redis.scan_iter(f"{prefix}:ws:user:*", count=1000):
            sockets += redis.zcount(key, now, "+inf")
        yield GaugeMetricFamily("kai_socket_connections", "Open WebSocket connections.", value=sockets)

    def _llm_usage(self) -> Iterator[Metric]:
        """Tokens and cost of every LLM call (the ``llm`` trace spans), by provider and model."""
        if not apps.is_installed("apps.runs"):
            return

        TraceSpan = apps.get_model("runs", "TraceSpan")
        tokens = CounterMetricFamily(
            "kai_llm_tokens",
            "LLM tokens used, by provider, model and direction.",
            labels=["provider", "model", "direction"],
        )
        cost = CounterMetricFamily(
            "kai_llm_cost_usd", "LLM cost in USD, by provider and model.", labels=["provider", "model"]
        )
        rows = (
            TraceSpan.objects.filter(kind="llm")
            .annotate(provider=KeyTextTransform("provider", "attributes"))
            .values("provider", "model")
            .annotate(tin=Sum("tokens_in"), tout=Sum("tokens_out"), usd=Sum("cost"))
            .order_by()
        )
        for row in rows:
            labels = [row["provider"] or "unknown", row["model"] or "unknown"]
            tokens.add_metric([*labels, "in"], row["tin"] or 0)
            tokens.add_metric([*labels, "out"], row["tout"] or 0)
            cost.add_metric(labels, float(row["usd"] or 0))
        yield tokens
        yield cost


def queue_names() -> list[str]:
    prefix = settings.KAI_REDIS_PREFIX
    names = {settings.CELERY_TASK_DEFAULT_QUEUE, f"{prefix}.runs"}
    for route in (getattr(settings, "CELERY_TASK_ROUTES", None) or {}).values():
        if isinstance(route, dict) and route.get("queue"):
            names.add(route["queue"])
    return sorted(names)


REGISTRY.register(PlatformCollector())


#: kombu's Redis transport keeps one list per priority step beside the plain queue list
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


def queue_depths(redis: Redis | None = None) -> dict[str, int]:
    """Messages waiting in each Celery queue (every priority step counted)."""
    if redis is None:
        redis = get_redis_connection("default")
    keyprefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("global_keyprefix", "")
    pipe = redis.pipeline(transaction=False)
    names = queue_names()
    for queue in names:
        for suffix in _PRIORITY_SUFFIXES:
            pipe.llen(f"{keyprefix}{queue}{suffix}")
    counts = pipe.execute()
    step = len(_PRIORITY_SUFFIXES)
    return {queue: sum(counts[i * step : (i + 1) * step]) for i, queue in enumerate(names)}


def worker_heartbeats(redis: Redis | None = None) -> dict[str, float]:
    """Live workers (fresh heartbeat key) → seconds since their last heartbeat."""
    if redis is None:
        redis = get_redis_connection("default")
    marker = f"{settings.KAI_REDIS_PREFIX}:workers:"
    keys = list(redis.scan_iter(f"{marker}*", count=1000))
    if not keys:
        return {}
    pipe = redis.pipeline(transaction=False)
    for key in keys:
        pipe.ttl(key)
    full = settings.KAI_WORKER_HEARTBEAT_SECONDS * 3
    return {
        key.decode()[len(marker) :]: float(max(0, full - ttl)) for key, ttl in zip(keys, pipe.execute()) if ttl >= 0
    }
