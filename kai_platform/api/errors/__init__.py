from kai_platform.api.errors import codes
from kai_platform.api.errors.exceptions import (
    Conflict,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
    StepUpRequired,
    Unprocessable,
)

__all__ = ["codes", "Conflict", "PayloadTooLarge", "RateLimited", "ServiceUnavailable", "StepUpRequired", "Unprocessable"]
