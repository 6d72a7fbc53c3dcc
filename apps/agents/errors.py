"""API errors of the agents app (rendered by the one envelope handler)."""

from rest_framework import status

from kai_platform.api.errors import ServiceUnavailable, codes
from kai_platform.api.errors.exceptions import KaiAPIException


class ProviderTimeout(KaiAPIException):
    status_code = status.HTTP_504_GATEWAY_TIMEOUT
    default_detail = "The LLM provider did not answer in time."
    error_type = "provider_timeout"
    kai_code = codes.AGENT_TIMEOUT


class ProviderUnavailable(ServiceUnavailable):
    default_detail = "The LLM provider cannot be reached."
    error_type = "provider_unavailable"


class ProviderRejected(KaiAPIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = "The LLM provider refused the request."
    error_type = "provider_error"
    kai_code = codes.AGENT_CONFIG_INVALID


class BudgetExceeded(KaiAPIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = "The provider's budget is spent."
    error_type = "budget_exceeded"
    kai_code = codes.AGENT_EXECUTION_FAILED


class AgentDisabled(KaiAPIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The agent is disabled."
    error_type = "agent_disabled"
    kai_code = codes.AGENT_DISABLED
