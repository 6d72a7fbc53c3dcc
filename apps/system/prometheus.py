"""``runtime/metrics``: one organization's figures as a Prometheus registry (built per request)."""

from __future__ import annotations

from django.db.models import Count, Sum
from django.db.models.fields.json import KeyTextTransform
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from apps.agents.models import Agent
from apps.runs.models import TraceSpan
from apps.system import selectors
from kai_platform.observability import window_stats


class _Figures:
    def __init__(self, families):
        self.families = families

    def collect(self):
        return self.families


def organization_registry(organization) -> tuple[CollectorRegistry, dict]:
    runs = selectors.run_counts_by_status(organization=organization)
    agents = dict(Agent.objects.for_org(organization).values_list("status").annotate(n=Count("id")).order_by())
    llm = list(
        TraceSpan.objects.filter(organization=organization, kind="llm")
        .annotate(provider=KeyTextTransform("provider", "attributes"))
        .values("provider", "model")
        .annotate(tin=Sum("tokens_in"), tout=Sum("tokens_out"), usd=Sum("cost"))
        .order_by()
    )
    requests = window_stats(str(organization.pk), 5)
    queues = selectors.queues()
    workers = selectors.workers()

    families = [*_organization_families(runs, agents, llm), *_platform_families(requests, queues, workers)]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Figures(families))
    figures = {
        "runs": runs,
        "agents": agents,
        "requests": requests,
        "queues": queues,
        "workers": workers,
        "llm": [
            {
                "provider": r["provider"] or "unknown",
                "model": r["model"] or "unknown",
                "tokens_in": r["tin"] or 0,
                "tokens_out": r["tout"] or 0,
                "cost": float(r["usd"] or 0),
            }
            for r in llm
        ],
    }
    return registry, figures


def _organization_families(runs: dict, agents: dict, llm: list) -> list[Metric]:
    """Runs and agents by status; LLM tokens and cost by provider and model."""
    families: list[Metric] = []
    family = GaugeMetricFamily("kai_org_runs", "Executions of the organization by status.", labels=["status"])
    for name, n in sorted(runs.items()):
        family.add_metric([name], n)
    families.append(family)
    family = GaugeMetricFamily("kai_org_agents", "Agents of the organization by status.", labels=["status"])
    for name, n in sorted(agents.items()):
        family.add_metric([name], n)
    families.append(family)
    tokens = CounterMetricFamily(
        "kai_org_llm_tokens", "LLM tokens by provider, model and direction.", labels=["provider", "model", "direction"]
    )
    cost = CounterMetricFamily(
        "kai_org_llm_cost_usd", "LLM cost in USD by provider and model.", labels=["provider", "model"]
    )
    for row in llm:
        labels = [row["provider"] or "unknown", row["model"] or "unknown"]
        tokens.add_metric([*labels, "in"], row["tin"] or 0)
        tokens.add_metric([*labels, "out"], row["tout"] or 0)
        cost.add_metric(labels, float(row["usd"] or 0))
    families += [tokens, cost]
    return families


def _platform_families(requests: dict, queues: dict, workers: dict) -> list[Metric]:
    """The API's last 5 minutes (latency, requests, error rate), queue depths and live workers."""
    families: list[Metric] = []
    latency = GaugeMetricFamily(
        "kai_org_api_latency_ms", "API latency percentiles over the last 5 minutes.", labels=["quantile"]
    )
    for q in ("p50", "p95", "p99"):
        if requests["latency_ms"][q] is not None:
            latency.add_metric([q], requests["latency_ms"][q])
    families.append(latency)
    families.append(
        GaugeMetricFamily("kai_org_api_requests_5m", "API requests in the last 5 minutes.", value=requests["requests"])
    )
    families.append(
        GaugeMetricFamily(
            "kai_org_api_error_rate_5m", "Share of 5xx answers in the last 5 minutes.", value=requests["error_rate"]
        )
    )
    depth = GaugeMetricFamily("kai_queue_depth", "Messages waiting per Celery queue.", labels=["queue"])
    for queue, n in queues.items():
        depth.add_metric([queue], n)
    families.append(depth)
    families.append(
        GaugeMetricFamily("kai_workers_alive", "Celery workers with a fresh heartbeat.", value=workers["count"])
    )
    return families
