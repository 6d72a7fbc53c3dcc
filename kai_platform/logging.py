"""Request-scoped log context (request id, organization, user, execution) and a JSON formatter."""
from __future__ import annotations

import contextvars
import logging
import time

import orjson

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("kai_request_id", default="-")
organization_var: contextvars.ContextVar[str] = contextvars.ContextVar("kai_organization", default="-")
user_var: contextvars.ContextVar[str] = contextvars.ContextVar("kai_user", default="-")
execution_var: contextvars.ContextVar[str] = contextvars.ContextVar("kai_execution", default="-")
#: per-request facts filled in as the request goes (client ip/user agent by the middleware,
#: actor type by authentication), read by audit rows; the middleware sets and resets it.
request_state_var: contextvars.ContextVar[dict | None] = contextvars.ContextVar("kai_request_state", default=None)


def request_state() -> dict:
    state = request_state_var.get()
    return state if state is not None else {}


class RequestContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        state = request_state()
        record.organization = state.get("organization", organization_var.get())
        record.user = state.get("user", user_var.get())
        record.execution_id = execution_var.get()
        return True


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
