from kai_platform.api.errors import codes
from kai_platform.api.errors.exceptions import (
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
    StepUpRequired,
    Unprocessable,
)

__all__ = [
    "codes",
    "Conflict",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "ServiceUnavailable",
    "StepUpRequired",
    "Unprocessable",
]
