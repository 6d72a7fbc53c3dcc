"""One cache backend per process for the request path.

Django keeps cache backends per async context (``caches`` is an asgiref ``Local``), so under ASGI,
where every request runs in a context of its own, the first ``cache`` use of each request builds a
fresh ``RedisCache``, django-redis client and redis-py client. The authentication probe and the rate-limit
counter use this process-wide backend instead: making keys is pure and a redis-py client is
thread-safe over its connection pool, which django-redis shares per process anyway.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.cache import BaseCache, caches
from django.core.signals import setting_changed

if TYPE_CHECKING:
    from redis import Redis

_backends: dict[str, BaseCache] = {}


def backend(alias: str = "default") -> BaseCache:
    """The process's backend for ``alias`` (made on first use, again after CACHES changes)."""
    try:
        return _backends[alias]
    except KeyError:
        made = _backends[alias] = caches.create_connection(alias)
        return made


def redis(alias: str = "default") -> Redis:
    """The raw redis-py client of ``alias`` (django-redis's ``get_redis_connection``, shared)."""
    client: Redis = backend(alias).client.get_client(write=True)  # type: ignore[attr-defined]  # django-redis's RedisCache
    return client


def _forget(*, setting: str, **kwargs: Any) -> None:
    if setting == "CACHES":
        _backends.clear()


setting_changed.connect(_forget, dispatch_uid="kai-shared-cache-backends")
