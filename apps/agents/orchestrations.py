"""Orchestrations as the agents app uses them (templates, deployments, the MCP channel). The crews
app owns them and provides these functions in its ``AppConfig.ready``, so agents never imports
crews (crews builds on agents, not the other way round)."""

from __future__ import annotations

from collections.abc import Callable

_provided: dict[str, Callable] = {}
NAMES = ("get", "create", "start")


def provide(**functions: Callable) -> None:
    """``get(organization, orchestration_id) -> Orchestration | None``;
    ``create(organization, actor, data) -> Orchestration``;
    ``start(orchestration, actor, inputs, params) -> Execution`` (queued)."""
    unknown = set(functions) - set(NAMES)
    if unknown:
        raise ValueError(f"unknown orchestration functions: {sorted(unknown)}")
    _provided.update(functions)


def available() -> bool:
    return all(name in _provided for name in NAMES)


def orchestration_get(*, organization, orchestration_id):
    if "get" not in _provided or not orchestration_id:
        return None
    return _provided["get"](organization, orchestration_id)


def orchestration_create(*, organization, actor, data: dict):
    return _provided["create"](organization, actor, data)


def orchestration_start(*, orchestration, actor, inputs: dict, params: dict | None = None):
    return _provided["start"](orchestration, actor, inputs, params)
