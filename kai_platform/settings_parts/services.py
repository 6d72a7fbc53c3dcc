"""PostgreSQL, Redis (cache, channel layer, key prefix) and the WebSocket limits. Without
``DATABASE_URL``/``REDIS_URL`` the embedded services are started (or joined)."""

from __future__ import annotations

import os

from django.core.exceptions import ImproperlyConfigured

from kai_platform import env
from kai_platform.env import env_bool, env_float, env_int, env_str
from kai_platform.settings_parts.core import DJANGO_ENV, PRODUCTION

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
