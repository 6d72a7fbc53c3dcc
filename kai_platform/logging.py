"""Request-scoped log context (request id, organization, user, execution) and a JSON formatter."""

from __future__ import annotations

import contextvars
import logging
import re
import time
from typing import Any, Literal, Self

import orjson

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("kai_request_id", default="-")
organization_var: contextvars.ContextVar[str] = contextvars.ContextVar("kai_organization", default="-")
user_var: contextvars.ContextVar[str] = contextvars.ContextVar("kai_user", default="-")
execution_var: contextvars.ContextVar[str] = contextvars.ContextVar("kai_execution", default="-")
#: per-request facts filled in as the request goes (client ip/user agent by the middleware,
#: actor type by authentication), read by audit rows; the middleware sets and resets it.
request_state_var: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "kai_request_state", default=None
)


def request_state() -> dict[str, Any]:
    state = request_state_var.get()
    return state if state is not None else {}


#: credentials that must never reach a log line: platform API keys, JWTs, bearer tokens, provider
#: keys (sk-…), and ``password=…``/``secret: …`` pairs. Replaced by ``[redacted]``.
_SECRET_PATTERNS = re.compile(
    r"(?P<keep>\bBearer\s+|(?:password|passwd|secret|api_?key|token)[\"']?\s*[=:]\s*[\"']?)"
    r"(?P<value>[^\s\"',;&]{4,})"
    r"|kai_[A-Za-z0-9]{4,}_[A-Za-z0-9_\-]{8,}"
    r"|eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]+"
    r"|\bsk-[A-Za-z0-9_\-]{8,}",
    re.IGNORECASE,
)


def _replace(match: re.Match[str]) -> str:
    return (match.group("keep") or "") + "[redacted]"


def scrub(text: str) -> str:
    return _SECRET_PATTERNS.sub(_replace, text)


class RequestContextFilter(logging.Filter):
    """Stamps request id, organization, user and execution id on every record, and scrubs
    credentials from its message."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        state = request_state()
        request = record.__dict__.get("request")
        if not state and request is not None:  # django.request logs once the request's context is gone
            state = getattr(request, "kai_log_state", None) or {}
            record.request_id = getattr(request, "request_id", request_id_var.get())
        record.organization = state.get("organization", organization_var.get())
        record.user = state.get("user", user_var.get())
        record.execution_id = execution_var.get()
        if not getattr(record, "_kai_scrubbed", False):
            message = record.getMessage()
            cleaned = scrub(message)
            if cleaned != message:
                record.msg, record.args = cleaned, ()
            record._kai_scrubbed = True
        return True


class log_context:
    """``with log_context(organization=..., execution=...)``: the log context of work outside a
    request (Celery tasks, runs)."""

    def __init__(self, *, organization: object = None, execution: object = None, user: object = None) -> None:
        self._values = [(organization_var, organization), (execution_var, execution), (user_var, user)]
        self._tokens: list[tuple[contextvars.ContextVar[str], contextvars.Token[str]]] = []

    def __enter__(self) -> Self:
        self._tokens = [(var, var.set(str(value))) for var, value in self._values if value is not None]
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        for var, token in reversed(self._tokens):
            var.reset(token)
        return False


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            "organization": getattr(record, "organization", "-"),
            "user": getattr(record, "user", "-"),
            "execution_id": getattr(record, "execution_id", "-"),
        }
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(payload, default=str).decode()


def logging_config(*, level: str, fmt: str, organization_level: str) -> dict[str, Any]:
    """The LOGGING setting: console lines (``json`` or ``plain``) with the request context, and the
    newest lines of each organization for GET system/logs (kai_platform.observability)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_context": {"()": "kai_platform.logging.RequestContextFilter"}},
        "formatters": {
            "json": {"()": "kai_platform.logging.JsonFormatter"},
            "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        },
        "handlers": {
            "console": {"class": "logging.StreamHandler", "filters": ["request_context"], "formatter": fmt},
            "organization": {
                "class": "kai_platform.observability.OrganizationLogHandler",
                "filters": ["request_context"],
                "level": organization_level,
            },
        },
        "root": {"handlers": ["console", "organization"], "level": level},
        "loggers": {
            "django.db.backends": {"level": "WARNING"},
            "pgserver": {"level": "WARNING"},
        },
    }
