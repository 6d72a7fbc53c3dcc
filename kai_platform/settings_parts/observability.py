"""Logging, request statistics and organization log lines, metric rollups and alert thresholds."""

from __future__ import annotations

from kai_platform.env import env_float, env_int, env_str
from kai_platform.logging import logging_config
from kai_platform.settings_parts.core import PRODUCTION

# --- logging ----------------------------------------------------------------------------------
LOG_LEVEL = env_str("KAI_LOG_LEVEL", "INFO")
LOGGING = logging_config(
    level=LOG_LEVEL,
    fmt=env_str("KAI_LOG_FORMAT", "json" if PRODUCTION else "plain"),
    organization_level=env_str("KAI_ORG_LOG_LEVEL", "INFO"),
)

# --- observability and system management (apps.system, kai_platform.observability) -----------
#: per-organization request statistics (system/performance) are kept this long in Redis
KAI_PERF_RETENTION_MINUTES = env_int("KAI_PERF_RETENTION_MINUTES", 120)
#: latency samples kept per organization and minute (percentiles are computed over them)
KAI_PERF_SAMPLES_PER_MINUTE = env_int("KAI_PERF_SAMPLES_PER_MINUTE", 2000)
#: newest log lines kept per organization for system/logs, and how long an idle list lives
KAI_ORG_LOG_LINES = env_int("KAI_ORG_LOG_LINES", 1000)
KAI_ORG_LOG_RETENTION_SECONDS = env_int("KAI_ORG_LOG_RETENTION_SECONDS", 7 * 24 * 3600)
#: MetricRollup rows older than this are deleted by the rollup task
KAI_METRIC_RETENTION_DAYS = env_int("KAI_METRIC_RETENTION_DAYS", 30)
#: performance_alert thresholds (over the status window); alerts of one type repeat at most every cooldown
KAI_STATUS_WINDOW_MINUTES = env_int("KAI_STATUS_WINDOW_MINUTES", 5)
KAI_ALERT_P95_MS = env_float("KAI_ALERT_P95_MS", 2000.0)
KAI_ALERT_ERROR_RATE = env_float("KAI_ALERT_ERROR_RATE", 0.05)
KAI_ALERT_MIN_REQUESTS = env_int("KAI_ALERT_MIN_REQUESTS", 20)
KAI_ALERT_FAILED_RUN_RATE = env_float("KAI_ALERT_FAILED_RUN_RATE", 0.25)
KAI_ALERT_MIN_RUNS = env_int("KAI_ALERT_MIN_RUNS", 4)
KAI_ALERT_QUEUE_DEPTH = env_int("KAI_ALERT_QUEUE_DEPTH", 500)
KAI_ALERT_CPU_PERCENT = env_float("KAI_ALERT_CPU_PERCENT", 90.0)
KAI_ALERT_MEMORY_PERCENT = env_float("KAI_ALERT_MEMORY_PERCENT", 90.0)
KAI_ALERT_COOLDOWN_SECONDS = env_int("KAI_ALERT_COOLDOWN_SECONDS", 300)
