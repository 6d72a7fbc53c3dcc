"""API exceptions beyond DRF's own. Raise these from services; the handler renders the envelope."""

from typing import Any

from rest_framework import status
from rest_framework.exceptions import APIException

from kai_platform.api.errors import codes


class KaiAPIException(APIException):
    """An API error with a seed code, a type, and optional per-field ``errors``."""

    error_type = "error"
    kai_code = codes.VALIDATION_ERROR

    def __init__(
        self,
        detail: Any = None,
        *,
        code: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail=detail)
        if code:
            self.kai_code = code
        self.errors = errors or []
        self.extra = extra or {}


class NotFound(KaiAPIException):
    status_code = status.HTTP_404_NOT_FOUND
    default_detail = "Not found."
    error_type = "not_found"


class Forbidden(KaiAPIException):
    status_code = status.HTTP_403_FORBIDDEN
    default_detail = "Not allowed."
    error_type = "permission_denied"


class Conflict(KaiAPIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state."
    error_type = "conflict"


class Unprocessable(KaiAPIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = "The request is well-formed but cannot be processed."
    error_type = "unprocessable"


class PayloadTooLarge(KaiAPIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    error_type = "payload_too_large"


class RateLimited(KaiAPIException):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_detail = "Rate limit exceeded."
    error_type = "rate_limited"
    kai_code = codes.RATE_LIMIT_EXCEEDED

    def __init__(self, detail: Any = None, *, retry_after: int, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.retry_after = max(1, int(retry_after))


class ServiceUnavailable(KaiAPIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "A service the platform depends on is unavailable; try again shortly."
    error_type = "service_unavailable"
    kai_code = codes.SERVICE_UNAVAILABLE


class StepUpRequired(KaiAPIException):
    status_code = status.HTTP_403_FORBIDDEN
    default_detail = "This operation needs a fresh step-up verification."
    error_type = "step_up_required"
    kai_code = codes.BIOMETRIC_REQUIRED
