from kai_platform.api.errors import codes
from kai_platform.api.errors.exceptions import (
    Conflict,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
    StepUpRequired,
    Unprocessable,
)

__all__ = ["codes", "Conflict", "NotFound", "PayloadTooLarge", "RateLimited", "ServiceUnavailable", "StepUpRequired", "Unprocessable"]
