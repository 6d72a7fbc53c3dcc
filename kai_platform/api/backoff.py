"""Failure counters with escalating locks in Redis, shared by every web process: the brake on
guessing (passwords, sign-in links, refresh tokens, API keys). See docs/security.md.

A ``Policy`` counts failures per subject (an account, an account + address, an address). The
``allowed``-th failure in a row locks the subject for ``lock_seconds``; each further failure once
the lock has passed locks it again for twice as long, up to ``max_seconds``. While a subject is
locked every attempt answers 429 ``GENERAL_002`` with ``Retry-After`` — whatever it carries, so a
lock is no oracle. A success forgets the subject's failures. Subjects are hashed into the keys.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings

from kai_platform.api import sharedcache
from kai_platform.api.errors import RateLimited

if TYPE_CHECKING:
    from redis import Redis
    from redis.commands.core import Script

#: failures are remembered this long after the last one (then the next lock starts short again)
MEMORY_SECONDS = 24 * 3600

# KEYS: failures, lock; ARGV: allowed, lock seconds, max seconds, memory → {failures, lock seconds}
_FAIL = """
local n = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
local allowed = tonumber(ARGV[1])
if n < allowed then return {n, 0} end
local seconds = math.min(tonumber(ARGV[2]) * 2 ^ (n - allowed), tonumber(ARGV[3]))
redis.call('SET', KEYS[2], n, 'EX', math.floor(seconds))
return {n, math.floor(seconds)}
"""
_scripts: dict[int, Script] = {}


def _redis() -> Redis:
    return sharedcache.redis("default")


def _fail_script() -> Script:
    client = _redis()
    script = _scripts.get(id(client))
    if script is None:
        script = _scripts[id(client)] = client.register_script(_FAIL)
    return script


@dataclass(frozen=True)
class Policy:
    """One kind of attempt (``name``) and how many failures it allows before a lock."""

    name: str
    allowed_setting: str = "KAI_AUTH_FAILURES_ALLOWED"  # the setting that holds how many are allowed

    def _keys(self, subject: str) -> tuple[str, str]:
        digest = hashlib.sha256(f"{self.name}\0{subject}".encode()).hexdigest()[:32]
        make_key = sharedcache.backend("default").make_key  # the cache's namespace (KAI_REDIS_PREFIX)
        return make_key(f"authfail:{self.name}:{digest}:n"), make_key(f"authfail:{self.name}:{digest}:lock")

    @property
    def threshold(self) -> int:
        return int(getattr(settings, self.allowed_setting))


def locked_for(checks: list[tuple[Policy, str]]) -> int:
    """Seconds until every listed (policy, subject) is unlocked; 0 when none is locked. One round trip."""
    pipe = _redis().pipeline(transaction=False)
    for policy, subject in checks:
        pipe.pttl(policy._keys(subject)[1])
    remaining = [ms for ms in pipe.execute() if ms and ms > 0]
    return math.ceil(max(remaining) / 1000) if remaining else 0


def refuse_if_locked(checks: list[tuple[Policy, str]], detail: str) -> None:
    """Raise 429 ``GENERAL_002`` (with ``Retry-After``) while any listed subject is locked."""
    seconds = locked_for(checks)
    if seconds:
        raise RateLimited(detail, retry_after=seconds)


def record_failure(policy: Policy, subject: str) -> int:
    """Count one failure; the seconds of the lock it started, or 0."""
    _, lock = _fail_script()(
        keys=list(policy._keys(subject)),
        args=[policy.threshold, settings.KAI_AUTH_LOCK_SECONDS, settings.KAI_AUTH_LOCK_MAX_SECONDS, MEMORY_SECONDS],
    )
    return int(lock)


def reset(checks: list[tuple[Policy, str]]) -> None:
    """Forget the failures (and any lock) of the listed subjects: after a success."""
    keys = [key for policy, subject in checks for key in policy._keys(subject)]
    if keys:
        _redis().delete(*keys)
