"""Sliding-window counters in Redis, one sorted set per (organization, quota).

Members are the ids of what was counted (an execution id, a ledger row id), scored by the time
they were accepted in milliseconds. One Lua script trims the window, checks the limit and adds
the new members atomically, so any number of processes share one count. A sentinel member
``~`` (score +inf) marks a window that holds the truth; a missing key means "unknown" (never
counted, expired, or Redis lost it) and the caller rebuilds it from the database first.

Time comes from the caller (``time.time()``), not from Redis, so one clock decides both the
database rows' ``created_at`` and the window.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django_redis import get_redis_connection

SENTINEL = "~"

# KEYS[1] window; ARGV: now_ms, window_ms, limit, amount, ttl_ms, members...
# → {status, used, score}: status -1 unknown window, 0 refused (score: the entry whose expiry
#   makes room), 1 accepted, 2 already counted (score: oldest entry)
CONSUME = """
local key = KEYS[1]
if redis.call('EXISTS', key) == 0 then return {-1, 0, ''} end
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[3])
local amount = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - tonumber(ARGV[2]))
local used = redis.call('ZCARD', key) - 1
if amount > 0 and redis.call('ZSCORE', key, ARGV[6]) then
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return {2, used, first[2]}
end
if amount > 0 and used + amount > limit then
  local idx = math.max(0, used + amount - limit - 1)
  local entry = redis.call('ZRANGE', key, idx, idx, 'WITHSCORES')
  return {0, used, entry[2] or ''}
end
for i = 6, #ARGV do redis.call('ZADD', key, now, ARGV[i]) end
if amount > 0 then redis.call('PEXPIRE', key, ARGV[5]) end
local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return {1, used + amount, first[2]}
"""

# KEYS[1] window; ARGV: ttl_ms, score1, member1, score2, member2, ... → 1 seeded, 0 already there
SEED = """
local key = KEYS[1]
if redis.call('EXISTS', key) == 1 then return 0 end
redis.call('ZADD', key, '+inf', '~')
for i = 2, #ARGV, 2 do redis.call('ZADD', key, ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIRE', key, ARGV[1])
return 1
"""

_scripts: dict = {}


@dataclass(frozen=True)
class WindowState:
    status: int  # -1 unknown, 0 refused, 1 accepted, 2 already counted
    used: int
    score_ms: float | None  # see CONSUME


def redis():
    return get_redis_connection("default")


def window_key(organization_id, quota: str) -> str:
    return f"{settings.KAI_REDIS_PREFIX}:quota:{organization_id}:{quota}"


def warned_key(organization_id, quota: str) -> str:
    return f"{settings.KAI_REDIS_PREFIX}:quota-warned:{organization_id}:{quota}"


def _script(name: str, source: str):
    script = _scripts.get(name)
    if script is None:
        script = _scripts[name] = redis().register_script(source)
    return script


def _ttl_ms(window_seconds: int) -> int:
    return window_seconds * 1000 + 60_000


def consume(key: str, *, now_ms: int, window_seconds: int, limit: int, members: list[str]) -> WindowState:
    """Count ``members`` if they fit under ``limit`` in the window ending now; an empty list peeks."""
    raw = _script("consume", CONSUME)(
        keys=[key], args=[now_ms, window_seconds * 1000, limit, len(members), _ttl_ms(window_seconds), *members]
    )
    status, used, score = int(raw[0]), int(raw[1]), raw[2]
    if isinstance(score, bytes):
        score = score.decode()
    score_ms = float(score) if score not in ("", None, "inf", "+inf") else None
    return WindowState(status, max(0, used), score_ms)


def seed(key: str, *, window_seconds: int, entries: list[tuple[int, str]]) -> bool:
    """Fill an unknown window with ``(score_ms, member)`` entries from the database."""
    args: list = [_ttl_ms(window_seconds)]
    for score, member in entries:
        args += [score, member]
    return bool(_script("seed", SEED)(keys=[key], args=args))


def mark_warned(organization_id, quota: str, *, window_seconds: int) -> bool:
    """True the first time in a window (the caller then warns)."""
    return bool(redis().set(warned_key(organization_id, quota), 1, nx=True, px=window_seconds * 1000))
