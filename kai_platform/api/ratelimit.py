"""Request rate limits per organization plan (docs/api.md), counted in Redis through
django-ratelimit's core so every process shares one count.

The subject is the request's organization when the credential names one, otherwise the client
IP. A count is one Redis round trip (SET NX + INCR pipelined); the JWT authentication adds it to
its own pipeline (kai_platform.tenancy.authcache), so a cached credential costs one round trip in all. ``X-RateLimit-Limit`` is the hard cap; past the soft limit responses carry
``X-RateLimit-Warning``; past the hard cap the answer is 429 ``GENERAL_002`` with ``Retry-After``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from django.conf import settings
from django_ratelimit.core import EXPIRATION_FUDGE, _get_window, _make_cache_key
from rest_framework.throttling import BaseThrottle

from kai_platform.api import sharedcache
from kai_platform.api.errors import RateLimited
from kai_platform.clientaddr import client_address
from kai_platform.tenancy.context import get_organization

if TYPE_CHECKING:
    from django.http import HttpRequest
    from redis import Redis
    from redis.client import Pipeline
    from rest_framework.request import Request
    from rest_framework.views import APIView

    from kai_platform.api.httprequest import KaiHttpRequest

#: plan → (soft, hard) requests per minute
PLAN_RATE_LIMITS: dict[str, tuple[int, int]] = {
    "free": (60, 120),
    "standard": (100, 200),
    "pro": (300, 600),
    "enterprise": (1000, 2000),
}
ANONYMOUS_PLAN = "standard"
GROUP = "kai.api"


@dataclass(frozen=True)
class RateUsage:
    subject_type: str  # "organization" | "ip"
    soft: int
    limit: int
    count: int
    reset: int  # epoch seconds when the window ends

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.count)

    @property
    def exceeded(self) -> bool:
        return self.count > self.limit

    @property
    def warning(self) -> bool:
        return self.count > self.soft

    def headers(self) -> dict[str, str]:
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
            "X-RateLimit-Type": self.subject_type,
        }
        if self.warning:
            headers["X-RateLimit-Warning"] = f"soft limit of {self.soft} requests/min exceeded"
        return headers


client_ip = client_address  # the one reading of the client address (kai_platform.clientaddr)


@dataclass(frozen=True)
class Counter:
    """One subject's counter in the current window: the Redis key and what its count means.
    Keys are django-ratelimit's (same group, rate and window), so both count the same thing."""

    key: str
    period: int
    window: int  # epoch seconds when the window ends
    subject_type: str
    soft: int
    hard: int

    @property
    def ttl(self) -> int:
        ttl: int = self.period + EXPIRATION_FUDGE
        return ttl

    def queue(self, pipe: Pipeline) -> None:
        """Add the increment to a Redis pipeline: two commands, one round trip with the rest."""
        pipe.set(self.key, 0, ex=self.ttl, nx=True)
        pipe.incr(self.key)

    def usage(self, count: int) -> RateUsage:
        return RateUsage(
            subject_type=self.subject_type,
            soft=self.soft,
            limit=self.hard,
            count=int(count),
            reset=int(time.time()) + max(0, self.window - int(time.time())),
        )


def counter_for(*, subject: str, subject_type: str, plan: str | None) -> Counter | None:
    """The counter of ``subject`` in the current window; None when rate limiting is disabled."""
    if not getattr(settings, "RATELIMIT_ENABLE", True):
        return None
    soft, hard = PLAN_RATE_LIMITS.get(plan or ANONYMOUS_PLAN, PLAN_RATE_LIMITS[ANONYMOUS_PLAN])
    period = settings.KAI_RATE_WINDOW_SECONDS
    rate = f"{hard}/{period}s"
    value = f"{subject_type}:{subject}"
    window = _get_window(value, period)
    cache = sharedcache.backend(getattr(settings, "RATELIMIT_USE_CACHE", "default"))
    key = cache.make_key(_make_cache_key(GROUP, window, rate, value, ""))
    return Counter(key=key, period=period, window=window, subject_type=subject_type, soft=soft, hard=hard)


def redis_client() -> Redis:
    return sharedcache.redis(getattr(settings, "RATELIMIT_USE_CACHE", "default"))


def count_request(request: HttpRequest | Request, *, subject: str, subject_type: str, plan: str) -> RateUsage | None:
    """Count one request against ``subject`` (one Redis round trip); None when rate limiting is
    disabled. Redis errors propagate (the dependency handler answers 503)."""
    counter = counter_for(subject=subject, subject_type=subject_type, plan=plan)
    if counter is None:
        return None
    pipe = redis_client().pipeline(transaction=False)
    counter.queue(pipe)
    _, count = pipe.execute()
    return counter.usage(count)


def remember(request: HttpRequest | Request, usage: RateUsage | None) -> None:
    django_request = cast("KaiHttpRequest", getattr(request, "_request", request))
    django_request.kai_rate_usage = usage
    django_request.kai_rate_counted = True


class PlanRateThrottle(BaseThrottle):
    """Counts every API request once, by organization (plan) or IP, and refuses past the hard cap."""

    def allow_request(self, request: Request, view: APIView) -> bool:
        django_request = cast("KaiHttpRequest", getattr(request, "_request", request))
        if getattr(django_request, "kai_rate_counted", False):
            usage = django_request.kai_rate_usage
        else:
            organization = get_organization(request)
            if organization is not None:
                usage = count_request(
                    request, subject=str(organization.pk), subject_type="organization", plan=organization.plan
                )
            else:
                usage = count_request(request, subject=client_ip(request), subject_type="ip", plan=ANONYMOUS_PLAN)
            remember(request, usage)
        if usage is not None and usage.exceeded:
            raise RateLimited(
                f"Rate limit exceeded: {usage.limit} requests per minute for this {usage.subject_type}.",
                retry_after=usage.reset - int(time.time()),
            )
        return True
