"""Seed 002 ``WebSocketClientEvents`` on the hub socket: thin adapters over the REST services.

Each client event names the REST view whose route does the same thing; its permission classes
(roles per action, step-up for sensitive operations) are run against the socket's freshly loaded
credential exactly as DRF runs them for a request, then the body is validated with the route's
serializer and the route's service is called. Errors come back as the REST envelope would carry
them (``error_code`` = the envelope's ``code``, ``status`` = its HTTP status).

The handlers live with their features (``<app>/client_events.py``, registered in ``AppConfig.ready``).
``run(name, user=, auth=, data=)`` is synchronous (call it in a thread); it returns
``(True, result)`` or ``(False, error)``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

from rest_framework import exceptions

from kai_platform.api.exceptions import exception_handler

#: the client events handled here (``agent:subscribe``/``agent:unsubscribe`` live on the consumer)
NAMES = (
    "workflow:execute",
    "workflow:stop",
    "agent:execute",
    "voice:command",
    "voice:stop_listening",
    "system:modify",
    "system:subscribe_architecture",
)


@dataclass(frozen=True)
class ClientEvent:
    view: Callable[[], type]  # the REST view whose permission classes gate the event (imported lazily)
    action: str | None
    method: str
    handler: Callable  # (*, user, auth, data, request) -> dict


def _rest_request(user, auth, data: dict, method: str):
    """What the REST permission classes read of a request: user, auth context, body, method."""
    return SimpleNamespace(user=user, auth=auth, data=data, method=method, META={}, query_params={})


def check_rest_permissions(view_class, *, action, method, request) -> None:
    view = view_class()
    view.action, view.request, view.format_kwarg = action, request, None
    for permission in view.get_permissions():
        if not permission.has_permission(request, view):
            raise exceptions.PermissionDenied(getattr(permission, "message", None))


def uuid_or_404(value):
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError, AttributeError):
        raise exceptions.NotFound()  # REST: a malformed id in the path is a 404 too


def require(data: dict, key: str):
    value = data.get(key)
    if value in (None, ""):
        raise exceptions.ValidationError({key: ["This field is required."]})
    return value


# --- the registry ----------------------------------------------------------------------------

#: name → ClientEvent; each feature registers its events in its ``AppConfig.ready`` (``register``)
EVENTS: dict[str, ClientEvent] = {}


def register(name: str, *, view: Callable[[], type], action: str | None, method: str):
    """Decorator: ``handler(*, user, auth, data, request) -> dict`` answers the client event
    ``name``, gated by the permission classes of ``view()`` (a REST view, loaded lazily)."""
    if name not in NAMES:
        raise ValueError(f"{name!r} is not a hub client event ({', '.join(NAMES)})")

    def decorator(handler):
        EVENTS[name] = ClientEvent(view, action, method, handler)
        return handler

    return decorator


def error_data(exc: BaseException) -> dict:
    """The REST envelope of ``exc`` as socket error data: ``error_code`` (the envelope's ``code``),
    ``error_message`` (its ``detail``), ``status`` (the HTTP status REST answers) and ``errors``."""
    response = exception_handler(exc, {})
    body = dict(response.data)
    extra = {k: v for k, v in body.items() if k not in ("detail", "code", "errors", "request_id", "type")}
    return {
        "error_code": body.get("code"),
        "error_message": body.get("detail"),
        "error_type": body.get("type"),
        "status": response.status_code,
        "errors": body.get("errors") or [],
        **extra,
    }


def run(name: str, *, user, auth, data: dict) -> tuple[bool, dict]:
    event = EVENTS.get(name)
    if event is None:  # its app is not installed
        return False, error_data(exceptions.NotFound(f"No handler for {name!r} is installed."))
    request = _rest_request(user, auth, data, event.method)
    try:
        check_rest_permissions(event.view(), action=event.action, method=event.method, request=request)
        return True, event.handler(user=user, auth=auth, data=data, request=request)
    except Exception as exc:  # noqa: BLE001 — every error becomes the REST envelope (500 logged there)
        return False, error_data(exc)
