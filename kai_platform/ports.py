"""Ports: services the lower layers (the kernel, accounts) call and higher layers implement —
identities, audit rows, events, step-up checks. Each implementation is registered by its app in
``AppConfig.ready`` (accounts, audit, events, stepup), so nothing below imports the app above it
(docs/architecture.md: the layers)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any

#: port → what it does; ``provide`` refuses any other name
PORTS = {
    "audit_record": "apps.audit.services.audit_record: one audit row for a write",
    "audit_covered": "apps.audit.services.audit_covered: a context in which audit_record writes nothing",
    "snapshot": "apps.audit.services.snapshot: a JSON-safe dict of a model instance",
    "publish": "apps.events.services.publish: record an event, deliver it after commit",
    "check_step_up": "apps.stepup.permissions.check_step_up: refuse a request without a fresh step-up",
    "user_and_membership": "apps.accounts.selectors.user_and_membership: a JWT's active user and membership",
    "api_key_authenticate": "apps.accounts.services.api_key_authenticate: the active API key of a raw key",
    "live_api_key_ids": "apps.accounts.selectors.live_api_key_ids: which of these API keys are not revoked",
    "live_members": "apps.accounts.selectors.live_members: which (user, organization) pairs are still members",
}
_implementations: dict[str, Callable[..., Any]] = {}


def provide(name: str, implementation: Callable[..., Any]) -> None:
    if name not in PORTS:
        raise ValueError(f"unknown port {name!r}")
    _implementations[name] = implementation


def _port(name: str) -> Callable[..., Any]:
    try:
        return _implementations[name]
    except KeyError:
        raise RuntimeError(f"nothing provides the port {name!r} ({PORTS[name]}); is its app installed?") from None


def audit_record(**kwargs: Any) -> Any:
    return _port("audit_record")(**kwargs)


def audit_covered() -> AbstractContextManager[None]:
    covered: AbstractContextManager[None] = _port("audit_covered")()
    return covered


def snapshot(instance: Any, fields: list[str] | None = None) -> dict[str, Any]:
    result: dict[str, Any] = _port("snapshot")(instance, fields)
    return result


def publish(organization: Any, type: str, data: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    return _port("publish")(organization, type, data, **kwargs)


def check_step_up(request: Any) -> None:
    _port("check_step_up")(request)


def user_and_membership(*, user_id: Any, organization_ref: str | None) -> tuple[Any, Any]:
    pair: tuple[Any, Any] = _port("user_and_membership")(user_id=user_id, organization_ref=organization_ref)
    return pair


def api_key_authenticate(*, raw_key: str) -> Any:
    return _port("api_key_authenticate")(raw_key=raw_key)


def live_api_key_ids(*, key_ids: Iterable[Any]) -> set[Any]:
    result: set[Any] = _port("live_api_key_ids")(key_ids=key_ids)
    return result


def live_members(*, user_ids: Iterable[Any], with_no_organization: bool) -> set[tuple[uuid.UUID, uuid.UUID | None]]:
    result: set[tuple[uuid.UUID, uuid.UUID | None]] = _port("live_members")(
        user_ids=user_ids, with_no_organization=with_no_organization
    )
    return result
