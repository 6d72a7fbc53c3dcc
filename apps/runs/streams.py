"""A run's output as a Redis stream (``stream_id``), read by SSE responses and sockets."""

from __future__ import annotations

import logging

from django.conf import settings
from django_redis import get_redis_connection

logger = logging.getLogger(__name__)


STREAM_MAXLEN = 20000
STREAM_TTL = 3600


def stream_push(key: str, fields: dict) -> None:
    try:
        redis = get_redis_connection("default")
        pipe = redis.pipeline(transaction=False)
        pipe.xadd(key, fields, maxlen=STREAM_MAXLEN, approximate=True)
        pipe.expire(key, STREAM_TTL)
        pipe.execute()
    except Exception:
        logger.warning("stream push to %s failed", key, exc_info=True)


def stream_key(stream_id: str) -> str:
    return f"{settings.KAI_REDIS_PREFIX}:stream:{stream_id}"
