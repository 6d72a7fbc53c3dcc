"""The one error envelope (docs/api.md):

``{"detail": str, "type": str, "code": "AUTH_001…GENERAL_004", "errors": [{"field", "message"}],
"request_id": str}`` with the right HTTP status, for DRF errors, Django errors (404/500 from the
URL resolver), oversize bodies and dependency outages alike.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response
from rest_framework.views import set_rollback

from kai_platform.api.errors import codes
from kai_platform.api.errors.exceptions import KaiAPIException, PayloadTooLarge, ServiceUnavailable
from kai_platform.api.renderers import EXPORT_FORMATS, KaiJSONRenderer
from kai_platform.logging import request_id_var

logger = logging.getLogger("kai.api")


def _dependency_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OperationalError, InterfaceError]
    try:
        # deferred: optional — the error types of the backends that are installed
        import redis

        errors += [redis.ConnectionError, redis.TimeoutError]
    except ImportError:  # pragma: no cover
        pass
    try:
        # deferred: optional — the error types of the backends that are installed
        from django_redis.exceptions import ConnectionInterrupted

        errors.append(ConnectionInterrupted)
    except ImportError:  # pragma: no cover
        pass
    try:
        # deferred: optional — the error types of the backends that are installed
        from psycopg_pool import PoolTimeout

        errors.append(PoolTimeout)
    except ImportError:  # pragma: no cover
        pass
    try:
        # deferred: optional — the error types of the backends that are installed
        from kombu.exceptions import OperationalError as KombuOperationalError

        errors.append(KombuOperationalError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


DEPENDENCY_ERRORS = _dependency_errors()


class FieldError(TypedDict):
    """One entry of the envelope's ``errors``."""

    field: str | None
    message: str


def flatten_errors(detail: object, prefix: str | None = None) -> list[FieldError]:
    """DRF's nested error detail → ``[{"field": "a.b", "message": "…"}]``."""
    out: list[FieldError] = []
    if isinstance(detail, dict):
        for key, value in detail.items():
            field = None if key in ("non_field_errors", "__all__") else str(key)
            path = ".".join(p for p in (prefix, field) if p) or prefix
            out.extend(flatten_errors(value, path))
    elif isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            out.extend({"field": prefix, "message": str(item)} for item in detail)
        else:
            for index, item in enumerate(detail):
                out.extend(flatten_errors(item, f"{prefix}[{index}]" if prefix else f"[{index}]"))
    else:
        out.append({"field": prefix, "message": str(detail)})
    return out


def envelope(
    *,
    status: int,
    detail: str,
    type_: str | None = None,
    code: str | None = None,
    errors: Sequence[Mapping[str, Any]] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "detail": detail,
        "type": type_ or codes.TYPE_BY_STATUS.get(status, "error"),
        "code": code
        or codes.BY_STATUS.get(status, codes.INTERNAL_SERVER_ERROR if status >= 500 else codes.VALIDATION_ERROR),
        "errors": errors or [],
        "request_id": request_id_var.get(),
    }
    if extra:
        body.update({k: v for k, v in extra.items() if k not in body})
    return body


def _translate(exc: BaseException) -> BaseException:
    if isinstance(exc, Http404):
        return drf.NotFound()
    if isinstance(exc, DjangoPermissionDenied):
        return drf.PermissionDenied()
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge("The request body exceeds the size limit.")
    if isinstance(exc, SuspiciousOperation):
        return drf.ValidationError({"non_field_errors": [str(exc) or "Suspicious request."]})
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "message_dict"):
            return drf.ValidationError(exc.message_dict)
        return drf.ValidationError({"non_field_errors": exc.messages})
    if isinstance(exc, DEPENDENCY_ERRORS):
        logger.error("dependency unavailable: %s: %s", type(exc).__name__, exc)
        return ServiceUnavailable()
    return exc


def _summary(exc: drf.APIException, errors: Sequence[Mapping[str, Any]]) -> str:
    if isinstance(exc, drf.ValidationError):
        if errors:
            first = errors[0]
            where = f"{first['field']}: " if first["field"] else ""
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            return f"Invalid input — {where}{first['message']}{more}"
        return "Invalid input."
    detail = exc.detail
    if isinstance(detail, (list, dict)):
        return str(exc.default_detail)
    return str(detail)


def exception_handler(exc: BaseException, context: Mapping[str, Any] | None) -> Response:
    exc = _translate(exc)
    if not isinstance(exc, drf.APIException):
        if isinstance(exc, DatabaseError):
            logger.exception("database error")
        else:
            logger.exception("unhandled error")
        set_rollback()
        return Response(envelope(status=500, detail="Internal server error."), status=500)

    headers: dict[str, str] = {}
    if auth_header := getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = auth_header
    if isinstance(exc, drf.Throttled) and (wait := getattr(exc, "wait", None)) is not None:
        headers["Retry-After"] = str(max(1, math.ceil(wait)))
    if isinstance(exc, KaiAPIException) and (retry_after := getattr(exc, "retry_after", None)) is not None:
        headers["Retry-After"] = str(retry_after)  # 429, and 503 during maintenance

    if isinstance(exc, drf.ValidationError) or isinstance(exc.detail, (dict, list)):
        errors: Sequence[Mapping[str, Any]] = flatten_errors(exc.detail)
    else:
        errors = list(getattr(exc, "errors", []) or [])

    code: str | None
    type_: str | None
    if isinstance(exc, KaiAPIException):
        code, type_ = exc.kai_code, exc.error_type
    else:
        drf_code = exc.get_codes() if not isinstance(exc.detail, (dict, list)) else None
        code = drf_code if drf_code in codes.ALL_CODES else None
        if exc.status_code == 401 and code is None and isinstance(exc, drf.AuthenticationFailed):
            code = codes.UNAUTHORIZED
        type_ = (
            "token_expired"
            if code == codes.TOKEN_EXPIRED
            else {
                drf.NotAuthenticated: "not_authenticated",
                drf.AuthenticationFailed: "authentication_failed",
                drf.ParseError: "parse_error",
                drf.UnsupportedMediaType: "unsupported_media_type",
                drf.Throttled: "rate_limited",
            }.get(type(exc))
        )

    body = envelope(
        status=exc.status_code,
        detail=_summary(exc, errors),
        type_=type_,
        code=code,
        errors=errors,
        extra=getattr(exc, "extra", None),
    )
    set_rollback()
    _render_errors_as_json(context)
    return Response(body, status=exc.status_code, headers=headers)


def _render_errors_as_json(context: Mapping[str, Any] | None) -> None:
    """An error is one JSON envelope even where the client asked for an export format
    (``?format=ndjson``), so it is never labelled as a stream of records."""
    request = (context or {}).get("request")
    renderer = getattr(request, "accepted_renderer", None)
    if request is not None and getattr(renderer, "format", None) in EXPORT_FORMATS:
        request.accepted_renderer = KaiJSONRenderer()
        request.accepted_media_type = "application/json"


# --- Django-level handlers (URL resolver 404, uncaught 500, …) --------------------------------


def _json_error(status: int, detail: str) -> JsonResponse:
    return JsonResponse(envelope(status=status, detail=detail), status=status)


def handler400(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return _json_error(400, "Bad request.")


def handler403(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return _json_error(403, "You do not have permission to perform this action.")


def handler404(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return _json_error(404, f"No route matches {request.method} {request.path}.")


def handler500(request: HttpRequest) -> JsonResponse:
    return _json_error(500, "Internal server error.")
