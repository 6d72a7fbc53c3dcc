"""Seed 002's error codes: the ``code`` of every error envelope is one of these."""

UNAUTHORIZED = "AUTH_001"
BIOMETRIC_REQUIRED = "AUTH_002"
TOKEN_EXPIRED = "AUTH_003"
INVALID_CREDENTIALS = "AUTH_004"

AGENT_NOT_FOUND = "AGENT_001"
AGENT_EXECUTION_FAILED = "AGENT_002"
AGENT_TIMEOUT = "AGENT_003"
AGENT_CONFIG_INVALID = "AGENT_004"
AGENT_DISABLED = "AGENT_005"

VOICE_TRANSCRIPTION_FAILED = "VOICE_001"
VOICE_COMMAND_NOT_UNDERSTOOD = "VOICE_002"
VOICE_SERVICE_UNAVAILABLE = "VOICE_003"

SYSTEM_OVERLOADED = "SYSTEM_001"
MODIFICATION_FAILED = "SYSTEM_002"
ROLLBACK_FAILED = "SYSTEM_003"

WORKFLOW_NOT_FOUND = "WORKFLOW_001"
WORKFLOW_EXECUTION_FAILED = "WORKFLOW_002"
WORKFLOW_VALIDATION_FAILED = "WORKFLOW_003"

VALIDATION_ERROR = "GENERAL_001"
RATE_LIMIT_EXCEEDED = "GENERAL_002"
INTERNAL_SERVER_ERROR = "GENERAL_003"
SERVICE_UNAVAILABLE = "GENERAL_004"

ALL_CODES = frozenset(v for k, v in dict(globals()).items() if k.isupper() and isinstance(v, str))

#: the code for a status when the exception does not name one
BY_STATUS = {
    400: VALIDATION_ERROR,
    401: UNAUTHORIZED,
    403: UNAUTHORIZED,
    404: VALIDATION_ERROR,
    405: VALIDATION_ERROR,
    406: VALIDATION_ERROR,
    409: VALIDATION_ERROR,
    413: VALIDATION_ERROR,
    415: VALIDATION_ERROR,
    422: VALIDATION_ERROR,
    429: RATE_LIMIT_EXCEEDED,
    500: INTERNAL_SERVER_ERROR,
    502: SERVICE_UNAVAILABLE,
    503: SERVICE_UNAVAILABLE,
    504: SERVICE_UNAVAILABLE,
}

#: ``type`` names by status, for exceptions that carry no type of their own
TYPE_BY_STATUS = {
    400: "validation_error",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "rate_limited",
    500: "server_error",
    503: "service_unavailable",
}
