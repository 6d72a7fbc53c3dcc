"""Connection limits shared by every ASGI process, counted in Redis, and the list of open sockets.

Each open socket is a member of a sorted set per user and per IP, scored by an expiry time it
refreshes while alive; a crashed process's sockets therefore age out instead of counting forever.
Seed 004's connection rate (``KAI_WS_CONNECTS_PER_MINUTE`` per user and per IP) is a sorted set of
the last minute's admitted connections per user and per IP. The check-and-add is one Lua script,
so concurrent connects cannot overshoot either limit. Each open socket also has a hash of what the
operator console lists (user, organization, path, client fingerprint and version), in an index
scored like the leases.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from typing import TYPE_CHECKING, cast

from asgiref.sync import sync_to_async
from django.conf import settings
from django_redis import get_redis_connection

if TYPE_CHECKING:
    from redis import Redis

    from kai_platform.realtime.protocols import WatchedSocket

_ACQUIRE = """
local now = tonumber(ARGV[1])
local expiry = tonumber(ARGV[2])
local member = ARGV[3]
for i = 1, 2 do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  local limit = tonumber(ARGV[3 + i])
  if redis.call('ZSCORE', KEYS[i], member) == false and redis.call('ZCARD', KEYS[i]) >= limit then
    return i
  end
end
for i = 3, 4 do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - 60)
  if redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[6]) then
    return i
  end
end
for i = 1, 2 do
  redis.call('ZADD', KEYS[i], expiry, member)
  redis.call('EXPIRE', KEYS[i], math.ceil(expiry - now) + 60)
end
for i = 3, 4 do
  redis.call('ZADD', KEYS[i], now, member)
  redis.call('EXPIRE', KEYS[i], 61)
end
redis.call('HSET', KEYS[5], unpack(ARGV, 7))
redis.call('EXPIRE', KEYS[5], math.ceil(expiry - now))
redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now)
redis.call('ZADD', KEYS[6], expiry, member)
return 0
"""
REFUSALS = {0: None, 1: "user", 2: "ip", 3: "user_rate", 4: "ip_rate"}

LEASE_SECONDS = 120
logger = logging.getLogger("kai.realtime")


def _redis() -> Redis:
    client: Redis = get_redis_connection("default")
    return client


def _keys(user_id: object, ip: str) -> list[str]:
    prefix = settings.KAI_REDIS_PREFIX
    return [f"{prefix}:ws:user:{user_id}", f"{prefix}:ws:ip:{ip}"]


def _info_key(member: str) -> str:
    return f"{settings.KAI_REDIS_PREFIX}:ws:conn:{member}"


def _index_key() -> str:
    return f"{settings.KAI_REDIS_PREFIX}:ws:conns"


def _acquire(user_id: object, ip: str, member: str, info: dict[str, str] | None = None) -> str | None:
    """None when admitted, else which limit refused: ``user``, ``ip`` (concurrent) or
    ``user_rate``, ``ip_rate`` (connections per minute). ``info``: what the console lists."""
    now = time.time()
    prefix = settings.KAI_REDIS_PREFIX
    fields = {"client_id": member, "user_id": str(user_id), "ip": ip, "connected_at": now, **(info or {})}
    script = _redis().register_script(_ACQUIRE)
    refused = script(
        keys=[
            *_keys(user_id, ip),
            f"{prefix}:ws:rate:user:{user_id}",
            f"{prefix}:ws:rate:ip:{ip}",
            _info_key(member),
            _index_key(),
        ],
        args=[
            now,
            now + LEASE_SECONDS,
            member,
            settings.KAI_WS_MAX_PER_USER,
            settings.KAI_WS_MAX_PER_IP,
            settings.KAI_WS_CONNECTS_PER_MINUTE,
            *[str(v) for pair in fields.items() for v in pair],
        ],
    )
    return REFUSALS[int(refused)]


def _release(user_id: object, ip: str, member: str) -> None:
    pipe = _redis().pipeline()
    for key in _keys(user_id, ip):
        pipe.zrem(key, member)
    pipe.delete(_info_key(member))
    pipe.zrem(_index_key(), member)
    pipe.execute()


def user_connections(user_id: object) -> int:
    """Open sockets of a user across every process (``connection_pool_info``, docs/realtime.md)."""
    key = _keys(user_id, "-")[0]
    return int(_redis().zcount(key, time.time(), "+inf"))


def open_sockets(*, organization_id: object = None, limit: int = 200) -> list[dict[str, str]]:
    """The open sockets of every process, newest first (the operator console's list)."""
    redis = _redis()
    members = cast(  # redis-py types it for withscores too
        list[bytes],
        redis.zrevrangebyscore(_index_key(), "+inf", time.time(), start=0, num=limit * 4 if organization_id else limit),
    )
    pipe = redis.pipeline(transaction=False)
    for member in members:
        pipe.hgetall(_info_key(member.decode()))
    rows = []
    for raw in pipe.execute():
        row = {k.decode(): v.decode() for k, v in raw.items()}
        if row and (organization_id is None or row.get("organization_id") == str(organization_id)):
            rows.append(row)
    rows.sort(key=lambda r: float(r.get("connected_at") or 0), reverse=True)
    return rows[:limit]


def refresh_many(leases: Collection[tuple[object, str, str]]) -> None:
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
    index = {member: expiry for _user_id, _ip, member in leases}
    pipe.zadd(_index_key(), index, xx=True)
    for member in index:
        pipe.expire(_info_key(member), LEASE_SECONDS)
    pipe.execute()


async def release_lease(consumer: WatchedSocket) -> None:
    """Release an open socket's lease once (``consumer._limits_held``); watched sockets leave the watcher."""
    # deferred: cycle — kai_platform.realtime.watch imports this module at load
    from kai_platform.realtime import watch

    watch.discard(consumer)
    if consumer._limits_held:
        consumer._limits_held = False
        try:
            await release(consumer.authenticated_identity.user_id, consumer.ip, consumer.client_id)
        except Exception:  # Redis down: the lease expires by itself
            logger.warning("could not release socket lease", exc_info=True)


acquire = sync_to_async(_acquire, thread_sensitive=False)
connections_of = sync_to_async(user_connections, thread_sensitive=False)
release = sync_to_async(_release, thread_sensitive=False)
