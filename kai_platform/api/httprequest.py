"""The Django request as this project's middleware and throttle leave it (for the types: Django
makes the request, the middleware set these attributes on it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.http import HttpRequest

if TYPE_CHECKING:
    from kai_platform.api.ratelimit import RateUsage


class KaiHttpRequest(HttpRequest):
    request_id: str
    kai_log_state: dict[str, str]
    kai_rate_usage: RateUsage | None
    kai_rate_counted: bool
