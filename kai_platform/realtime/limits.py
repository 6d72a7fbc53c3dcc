"""Connection limits shared by every ASGI process, counted in Redis.

Each open socket is a member of a sorted set per user and per IP, scored by an expiry time it
refreshes while alive; a crashed process's sockets therefore age out instead of counting forever.
The check-and-add is one Lua script, so concurrent connects cannot overshoot the limit.
"""
from __future__ import annotations

import time

from asgiref.sync import sync_to_async
from django.conf import settings

_ACQUIRE = """
local now = tonumber(ARGV[1])
local expiry = tonumber(ARGV[2])
local member = ARGV[3]
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local limit = tonumber(ARGV[3 + i])
  if redis.call('ZSCORE', key, member) == false and redis.call('ZCARD', key) >= limit then
    return i
  end
end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, expiry, member)
  redis.call('EXPIRE', key, math.ceil(expiry - now) + 60)
end
return 0
"""

LEASE_SECONDS = 120


def _redis():
    from django_redis import get_redis_connection

    return get_redis_connection("default")


def _keys(user_id, ip) -> list[str]:
    prefix = settings.KAI_REDIS_PREFIX
    return [f"{prefix}:ws:user:{user_id}", f"{prefix}:ws:ip:{ip}"]


def _acquire(user_id, ip, member: str) -> str | None:
    now = time.time()
    script = _redis().register_script(_ACQUIRE)
    refused = script(
        keys=_keys(user_id, ip),
        args=[now, now + LEASE_SECONDS, member, settings.KAI_WS_MAX_PER_USER, settings.KAI_WS_MAX_PER_IP],
    )
    return {0: None, 1: "user", 2: "ip"}[int(refused)]


def _release(user_id, ip, member: str) -> None:
    pipe = _redis().pipeline()
    for key in _keys(user_id, ip):
        pipe.zrem(key, member)
    pipe.execute()


def refresh_many(leases) -> None:
    """Keep the leases of open sockets, ``(user_id, ip, member)`` each, alive: one pipeline, one
    ``ZADD XX`` per key (sync; the credential watcher calls it once per interval for a process)."""
    expiry = time.time() + LEASE_SECONDS
    members: dict[str, dict[str, float]] = {}
    for user_id, ip, member in leases:
        for key in _keys(user_id, ip):
            members.setdefault(key, {})[member] = expiry
    if not members:
        return
    pipe = _redis().pipeline(transaction=False)
    for key, mapping in members.items():
        pipe.zadd(key, mapping, xx=True)
    pipe.execute()


acquire = sync_to_async(_acquire, thread_sensitive=False)
release = sync_to_async(_release, thread_sensitive=False)
