"""Prometheus metrics (``/metrics``): request latency by route, and platform gauges read at
scrape time — runs by status, queue depth, live workers, open sockets, LLM tokens and cost.

Gauges come from the database and Redis when scraped (a custom collector), so every web
replica reports the same platform-wide figures; request histograms are per process.
"""
from __future__ import annotations

import logging
import time

from django.apps import apps
from django.conf import settings
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

logger = logging.getLogger(__name__)

REGISTRY = CollectorRegistry()

REQUEST_LATENCY = Histogram(
    "kai_http_request_duration_seconds",
    "HTTP request latency by route.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)


def _route_of(request) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return "unmatched"
    return (match.route or match.view_name or "unknown")[:120]


class RequestMetricsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        if request.path_info != "/metrics":
            REQUEST_LATENCY.labels(request.method, _route_of(request), f"{response.status_code // 100}xx").observe(
                time.perf_counter() - started)
        return response


class PlatformCollector:
    """Platform-wide gauges, computed at scrape time (never at import or registration)."""

    def describe(self):
        return []  # names are dynamic; registering must not run the queries

    def collect(self):
        yield from self._safely(self._runs)
        yield from self._safely(self._redis)
        yield from self._safely(self._llm_usage)

    def _safely(self, producer):
        try:
            yield from producer()
        except Exception:  # a scrape must not fail because one source is down
            logger.warning("metrics source %s failed", producer.__name__, exc_info=True)

    def _runs(self):
        if not apps.is_installed("apps.crews"):
            return
        from django.db.models import Count

        Execution = apps.get_model("crews", "Execution")
        family = GaugeMetricFamily("kai_runs", "Executions by status.", labels=["status"])
        for row in Execution.objects.values("status").annotate(n=Count("id")).order_by():
            family.add_metric([row["status"]], row["n"])
        yield family

    def _redis(self):
        from django_redis import get_redis_connection

        redis = get_redis_connection("default")
        prefix = settings.KAI_REDIS_PREFIX
        workers = sum(1 for _ in redis.scan_iter(f"{prefix}:workers:*"))
        yield GaugeMetricFamily("kai_workers_alive", "Celery workers with a fresh heartbeat.", value=workers)
        queues = GaugeMetricFamily("kai_queue_depth", "Messages waiting per Celery queue.", labels=["queue"])
        keyprefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("global_keyprefix", "")
        for queue in queue_names():
            queues.add_metric([queue], redis.llen(f"{keyprefix}{queue}"))
        yield queues
        now = time.time()
        sockets = 0
        for key in redis.scan_iter(f"{prefix}:ws:user:*"):
            sockets += redis.zcount(key, now, "+inf")
        yield GaugeMetricFamily("kai_socket_connections", "Open WebSocket connections.", value=sockets)

    def _llm_usage(self):
        if not apps.is_installed("apps.crews"):
            return
        try:
            Usage = apps.get_model("crews", "UsageRollup")
        except LookupError:
            return
        from django.db.models import Sum

        fields = {f.name for f in Usage._meta.get_fields()}
        label = "provider" if "provider" in fields else "model"
        tokens = CounterMetricFamily("kai_llm_tokens", "LLM tokens used.", labels=[label])
        cost = CounterMetricFamily("kai_llm_cost_usd", "LLM cost in USD.", labels=[label])
        token_fields = [f for f in ("tokens_in", "tokens_out", "input_tokens", "output_tokens", "tokens")
                        if f in fields]
        if not token_fields or "cost" not in fields:
            return
        aggregates = {f: Sum(f) for f in token_fields}
        for row in Usage.objects.values(label).annotate(cost_sum=Sum("cost"), **aggregates).order_by():
            tokens.add_metric([str(row[label])], sum(row[f] or 0 for f in token_fields))
            cost.add_metric([str(row[label])], float(row["cost_sum"] or 0))
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
