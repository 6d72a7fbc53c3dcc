from rest_framework import status

from kai_platform.api.errors import codes
from kai_platform.api.errors.exceptions import KaiAPIException


class StepUpFailed(KaiAPIException):
    """A step-up ceremony or password re-check that did not verify (403; no grant was issued)."""

    status_code = status.HTTP_403_FORBIDDEN
    default_detail = "The step-up verification failed."
    error_type = "step_up_failed"
    kai_code = codes.BIOMETRIC_REQUIRED
