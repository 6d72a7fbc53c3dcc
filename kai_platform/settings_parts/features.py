"""The feature apps' settings: LLM providers (apps.agents, kai_platform.llm), the run engine
(apps.runs), retention, voice and outbound webhooks."""

from __future__ import annotations

from kai_platform.env import env_float, env_int, env_list, env_str
from kai_platform.settings_parts.core import PRODUCTION

# --- LLM providers, agents --------------------------------------------------------------------
#: what a model with no configured provider runs on: "builtin" (embedded default) or "" (fail the run)
KAI_LLM_FALLBACK = env_str("KAI_LLM_FALLBACK", "" if PRODUCTION else "builtin")
#: seconds a provider call may take before it fails with an error envelope (per-provider override)
KAI_LLM_TIMEOUT_SECONDS = env_float("KAI_LLM_TIMEOUT_SECONDS", 60.0)
#: an agent or service with no heartbeat for this long is offline
KAI_HEARTBEAT_TTL_SECONDS = env_int("KAI_HEARTBEAT_TTL_SECONDS", 60)

# --- the run engine (apps.runs) and retention (apps.retention) -----------------------------------
#: audit rows are never kept fewer days than this, whatever an organization's policy says
KAI_AUDIT_MIN_DAYS = env_int("KAI_AUDIT_MIN_DAYS", 90)
#: seconds a prune sleeps between batches (gives live traffic the database between statements)
KAI_RETENTION_PAUSE_SECONDS = env_float("KAI_RETENTION_PAUSE_SECONDS", 0.1)
#: share of wall time a prune may work: it rests (1 - duty) / duty times as long as each statement took
KAI_RETENTION_DUTY = env_float("KAI_RETENTION_DUTY", 0.5)
#: CPU niceness of a prune's thread and (database on this host) its PostgreSQL backend; 0: unchanged
KAI_RETENTION_NICE = env_int("KAI_RETENTION_NICE", 10)
#: a running execution stamps heartbeat_at this often; the reaper fails it once it is this old
KAI_RUN_HEARTBEAT_SECONDS = env_float("KAI_RUN_HEARTBEAT_SECONDS", 2.0)
KAI_RUN_STALE_SECONDS = env_int("KAI_RUN_STALE_SECONDS", 60)
#: provider SDKs a worker imports (and warms) as it starts, so a first model call does not pay the
#: import inside its timeout: "openai" (every OpenAI-compatible type), "anthropic"; "" = none
KAI_PRELOAD_SDKS = env_list("KAI_PRELOAD_SDKS", ["openai", "anthropic"])
#: how long a synchronous agent call (agents/{id}/test, deployments/{id}/invoke) waits for its run
#: before answering 202 with the execution_id
KAI_SYNC_RUN_WAIT_SECONDS = env_float("KAI_SYNC_RUN_WAIT_SECONDS", 120.0)
#: how long a process reuses a model's resolution for an organization (0: never)
KAI_RUN_RESOLVE_CACHE_SECONDS = env_float("KAI_RUN_RESOLVE_CACHE_SECONDS", 1.0)
#: a schedule's tick fired later than this after its time counts as missed (apps.scheduler)
KAI_SCHEDULER_MISFIRE_GRACE_SECONDS = env_int("KAI_SCHEDULER_MISFIRE_GRACE_SECONDS", 120)
#: how long a process reuses a read that found maintenance off (0: never)
KAI_MAINTENANCE_CACHE_SECONDS = env_float("KAI_MAINTENANCE_CACHE_SECONDS", 1.0)
#: consecutive provider failures that open its circuit breaker, and for how long
KAI_CIRCUIT_FAILURES = env_int("KAI_CIRCUIT_FAILURES", 5)
KAI_CIRCUIT_COOLDOWN_SECONDS = env_int("KAI_CIRCUIT_COOLDOWN_SECONDS", 30)

# --- voice (apps.voice) ----------------------------------------------------------------------
#: the espeak-ng binary voice/synthesize falls back to when no TTS provider is configured ("" = off)
KAI_ESPEAK_BINARY = env_str("KAI_ESPEAK_BINARY", "espeak-ng")

# --- outbound webhooks (apps.webhooks) ---------------------------------------------------------
#: webhook targets that may be private/loopback (hosts, IPs or CIDRs; the org's network_allowlist also applies)
KAI_WEBHOOK_ALLOWED_HOSTS = env_list("KAI_WEBHOOK_ALLOWED_HOSTS", [])
#: failed deliveries are retried after base × 2^(attempt-1) seconds (capped), for up to KAI_WEBHOOK_RETRY_HOURS
KAI_WEBHOOK_BACKOFF_BASE_SECONDS = env_float("KAI_WEBHOOK_BACKOFF_BASE_SECONDS", 30.0)
KAI_WEBHOOK_BACKOFF_MAX_SECONDS = env_float("KAI_WEBHOOK_BACKOFF_MAX_SECONDS", 3600.0)
KAI_WEBHOOK_RETRY_HOURS = env_float("KAI_WEBHOOK_RETRY_HOURS", 24.0)
KAI_WEBHOOK_TIMEOUT_SECONDS = env_float("KAI_WEBHOOK_TIMEOUT_SECONDS", 10.0)
