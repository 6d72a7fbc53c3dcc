"""Socket commands (``command``, docs/sockets.md: start, stop, restart, update_config, get_status).

Apps register a handler per command name; the hub checks the role the same way the REST
route does and calls the handler in a thread. A handler takes ``(*, user, auth, agent_id,
parameters)`` and returns a JSON-able result, or raises ``CommandError``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from kai_platform.tenancy.roles import ALL_ROLES


class CommandError(Exception):
    def __init__(self, error_code: str, message: str):
        super().__init__(message)
        self.error_code = error_code
        self.message = message


@dataclass(frozen=True)
class Command:
    name: str
    handler: Callable[..., Any]
    roles: frozenset[str]


_REGISTRY: dict[str, Command] = {}


_H = TypeVar("_H", bound=Callable[..., Any])


def register_command(name: str, *, roles: Iterable[str] = ALL_ROLES) -> Callable[[_H], _H]:
    def decorator(handler: _H) -> _H:
        _REGISTRY[name] = Command(name=name, handler=handler, roles=frozenset(roles))
        return handler

    return decorator


def get_command(name: str) -> Command | None:
    return _REGISTRY.get(name)


def command_names() -> list[str]:
    return sorted(_REGISTRY)
