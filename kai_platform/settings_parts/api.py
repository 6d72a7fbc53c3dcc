"""The HTTP API: REST framework, tokens, sign-in abuse limits, the OpenAPI document and rate limits."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from kai_platform import env
from kai_platform.env import env_bool, env_float, env_int, env_str
from kai_platform.settings_parts.core import SECRET_KEY

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "kai_platform.tenancy.authentication.ApiKeyAuthentication",
        "kai_platform.tenancy.authentication.JWTAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["kai_platform.tenancy.permissions.IsOrganizationMember"],
    "DEFAULT_THROTTLE_CLASSES": ["kai_platform.api.ratelimit.PlanRateThrottle"],
    "DEFAULT_PAGINATION_CLASS": "kai_platform.api.pagination.KaiPagination",
    "PAGE_SIZE": 20,
    "DEFAULT_FILTER_BACKENDS": ["kai_platform.api.filters.KaiFilterBackend"],
    "DEFAULT_RENDERER_CLASSES": ["kai_platform.api.renderers.KaiJSONRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "kai_platform.api.renderers.KaiContentNegotiation",
    # JSON bodies only; the upload routes name their multipart parser (so the OpenAPI document
    # offers each route exactly the body types it reads)
    "DEFAULT_PARSER_CLASSES": ["kai_platform.api.parsers.KaiJSONParser"],
    "EXCEPTION_HANDLER": "kai_platform.api.exceptions.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "kai_platform.api.schema.KaiAutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "URL_FORMAT_OVERRIDE": "format",
}

ACCESS_TOKEN_LIFETIME = timedelta(seconds=env_int("KAI_ACCESS_TOKEN_SECONDS", 15 * 60))
REFRESH_TOKEN_LIFETIME = timedelta(seconds=env_int("KAI_REFRESH_TOKEN_SECONDS", 7 * 24 * 3600))
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": ACCESS_TOKEN_LIFETIME,
    "REFRESH_TOKEN_LIFETIME": REFRESH_TOKEN_LIFETIME,
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": False,
    "ALGORITHM": "HS256",
    "SIGNING_KEY": env_str("KAI_JWT_SIGNING_KEY", SECRET_KEY),
    "AUTH_HEADER_TYPES": ("Bearer",),
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "user_id",
}
MAGIC_LINK_LIFETIME = timedelta(minutes=15)
PASSWORD_RESET_TIMEOUT = env_int("KAI_PASSWORD_RESET_SECONDS", 3600)

# --- sign-in abuse (docs/security.md) -----------------------------------------------------------
#: reverse proxies whose X-Forwarded-For/-Proto and Forwarded headers are believed; empty: none
KAI_TRUSTED_PROXIES = env.env_cidrs("KAI_TRUSTED_PROXIES")
#: failures per account (and per account + address) before a lock; locks double up to the max
KAI_AUTH_FAILURES_ALLOWED = env_int("KAI_AUTH_FAILURES_ALLOWED", 5)
#: failures per address of attempts that name no account (API keys, refresh tokens, links)
KAI_AUTH_ADDRESS_FAILURES_ALLOWED = env_int("KAI_AUTH_ADDRESS_FAILURES_ALLOWED", 20)
KAI_AUTH_LOCK_SECONDS = env_int("KAI_AUTH_LOCK_SECONDS", 60)
KAI_AUTH_LOCK_MAX_SECONDS = env_int("KAI_AUTH_LOCK_MAX_SECONDS", 900)

SPECTACULAR_SETTINGS: dict[str, Any] = {
    "TITLE": "kAI platform API",
    "DESCRIPTION": "Define, run, watch and schedule AI agents, crews and DAG workflows.",
    "VERSION": "v1",
    "OAS_VERSION": "3.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "PREPROCESSING_HOOKS": ["kai_platform.api.schema.only_canonical_api"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "kai_platform.api.schema.request_rules",
        "kai_platform.api.schema.error_responses",
    ],
    "COMPONENT_SPLIT_REQUEST": True,
    "SECURITY": [{"jwtAuth": []}, {"apiKeyAuth": []}],
    "ENUM_NAME_OVERRIDES": {
        "RoleEnum": "kai_platform.tenancy.roles.Role",
    },
}
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"].update(
    {
        "AgentStatusEnum": "apps.agents.models.AgentStatus",
        "ServiceStatusEnum": "apps.agents.models.ServiceStatus",
        "DeploymentStatusEnum": "apps.agents.models.DeploymentStatus",
        "ProviderTypeEnum": "kai_platform.llm.PROVIDER_TYPES",
        "ExecutionStatusEnum": "apps.runs.models.ExecutionStatus",
        "ExecutionKindEnum": "apps.runs.models.ExecutionKind",
        "OrchestrationStatusEnum": "apps.crews.models.OrchestrationStatus",
        "SystemModificationTypeEnum": "apps.system.models.ModificationType",
    }
)

# --- rate limits (docs/api.md) ------------------------------------------------------------------
RATELIMIT_USE_CACHE = "default"
RATELIMIT_ENABLE = env_bool("KAI_RATELIMIT_ENABLE", True)
#: how long a process may reuse a credential's user/membership/organization rows; the authorization
#: versions in Redis are checked on every request anyway (kai_platform/tenancy/authcache.py)
KAI_AUTH_CACHE_SECONDS = env_float("KAI_AUTH_CACHE_SECONDS", 5.0)
#: request statistics and organization log lines are written to Redis this often (observability)
KAI_PERF_FLUSH_SECONDS = env_float("KAI_PERF_FLUSH_SECONDS", 1.0)
KAI_RATE_WINDOW_SECONDS = 60

#: bearer token Prometheus sends to /metrics (required in production)
KAI_METRICS_TOKEN = env_str("KAI_METRICS_TOKEN")
