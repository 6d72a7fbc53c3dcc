"""Cross-cutting HTTP behaviour: request ids, API paths and headers, body cap, rate-limit headers."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase, JsonResponse

from kai_platform.api import ratelimit, urlcache
from kai_platform.api.exceptions import DEPENDENCY_ERRORS, envelope
from kai_platform.api.httprequest import KaiHttpRequest
from kai_platform.clientaddr import UNKNOWN, client_address
from kai_platform.logging import request_id_var, request_state_var

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
API_PREFIXES = ("/api/", "/api-")
GetResponse = Callable[[HttpRequest], HttpResponseBase]


def is_api_path(path: str) -> bool:
    return path.startswith(API_PREFIXES) or path == "/health"


class RequestIDMiddleware:
    """Takes a well-formed ``X-Request-ID`` or makes one; echoes it; puts it in the log context."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: KaiHttpRequest) -> HttpResponseBase:
        incoming = request.META.get("HTTP_X_REQUEST_ID", "")
        request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        token = request_id_var.set(request_id)
        ip = client_address(request)
        state = {"ip": "" if ip == UNKNOWN else ip, "user_agent": request.META.get("HTTP_USER_AGENT", "")[:300]}
        request.kai_log_state = state  # for records logged after this middleware returns (django.request)
        state_token = request_state_var.set(state)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
            request_state_var.reset(state_token)
        response["X-Request-ID"] = request_id
        return response


class ApiPathMiddleware:
    """For API paths: accept an optional trailing slash, refuse oversize bodies early (413),
    and stamp ``API-Version``. Loading it installs the resolved-path cache (api/urlcache.py)."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

        urlcache.install()

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        path = request.path_info
        if not is_api_path(path):
            return self.get_response(request)
        if len(path) > 1 and path.endswith("/"):
            request.path_info = path.rstrip("/")
        response = self._check_body(request) or self.get_response(request)
        if response.status_code == 404 and not response.get("Content-Type", "").startswith("application/json"):
            # The URL resolver's 404 (an HTML page when DEBUG is on): API clients get the envelope.
            response = JsonResponse(
                envelope(status=404, detail=f"No route matches {request.method} {request.path}."), status=404
            )
        response["API-Version"] = "v1"
        return response

    @staticmethod
    def _check_body(request: HttpRequest) -> JsonResponse | None:
        content_type = request.META.get("CONTENT_TYPE", "")
        if content_type.startswith("multipart/form-data"):
            return None  # uploads are capped while streaming by the files app
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return JsonResponse(envelope(status=400, detail="Invalid Content-Length header."), status=400)
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and length > limit:
            return JsonResponse(
                envelope(
                    status=413,
                    detail=f"The request body of {length} bytes exceeds the limit of {limit} bytes.",
                    errors=[{"field": None, "message": f"max {limit} bytes"}],
                ),
                status=413,
            )
        return None


class RateLimitHeadersMiddleware:
    """Puts ``X-RateLimit-*`` on every API response. Requests the DRF throttle did not count
    (refused before it ran: bad credentials, unknown routes) are counted here by client IP."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if not is_api_path(request.path_info) or request.path_info == "/health":
            return response

        usage = getattr(request, "kai_rate_usage", None)
        if not getattr(request, "kai_rate_counted", False):
            try:
                usage = ratelimit.count_request(
                    request, subject=ratelimit.client_ip(request), subject_type="ip", plan=ratelimit.ANONYMOUS_PLAN
                )
            except DEPENDENCY_ERRORS:
                usage = None
        if usage is not None:
            for name, value in usage.headers().items():
                response[name] = value
        return response
