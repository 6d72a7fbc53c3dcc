"""Seed 002 ``WebSocketClientEvents`` on the hub socket: thin adapters over the REST services.

Each client event names the REST view whose route does the same thing; its permission classes
(roles per action, step-up for sensitive operations) are run against the socket's freshly loaded
credential exactly as DRF runs them for a request, then the body is validated with the route's
serializer and the route's service is called. Errors come back as the REST envelope would carry
them (``error_code`` = the envelope's ``code``, ``status`` = its HTTP status).

``run(name, user=, auth=, data=)`` is synchronous (call it in a thread); it returns
``(True, result)`` or ``(False, error)``.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable

from rest_framework import exceptions

from kai_platform.api.exceptions import exception_handler

#: the client events handled here (``agent:subscribe``/``agent:unsubscribe`` live on the consumer)
NAMES = ("workflow:execute", "workflow:stop", "agent:execute", "voice:command", "voice:stop_listening",
         "system:modify", "system:subscribe_architecture")


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


def _uuid_or_404(value):
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError, AttributeError):
        raise exceptions.NotFound()  # REST: a malformed id in the path is a 404 too


def _require(data: dict, key: str):
    value = data.get(key)
    if value in (None, ""):
        raise exceptions.ValidationError({key: ["This field is required."]})
    return value


# --- adapters -----------------------------------------------------------------------------------

def _workflow_execute(*, user, auth, data, request):
    """``POST workflows/{id}/execute`` (no ``wait_for_completion``: the socket answers at once)."""
    from apps.workflows import services
    from apps.workflows.models import Workflow
    from apps.workflows.serializers import WorkflowExecuteSerializer
    from apps.workflows.views import _started_body

    workflow_id = _uuid_or_404(_require(data, "workflow_id"))
    workflow = Workflow.objects.for_org(auth.organization).filter(pk=workflow_id).first()
    if workflow is None:
        raise exceptions.NotFound()
    body = {key: data[key] for key in ("inputs", "input_data", "priority") if key in data}
    if "inputs" not in body and "data" in data:  # seed 002 ``workflow:execute(workflow_id, data?)``
        body["inputs"] = data["data"]
    serializer = WorkflowExecuteSerializer(data=body, context={"request": request})
    serializer.is_valid(raise_exception=True)
    valid = serializer.validated_data
    inputs = valid["inputs"] if valid.get("inputs") is not None else valid["input_data"]
    run = services.workflow_start(workflow=workflow, actor=user, inputs=inputs, trigger_type="manual",
                                  trigger_source=f"ws:{user.pk}", priority=valid["priority"])
    return {"success": True, **_started_body(run)}


def _workflow_stop(*, user, auth, data, request):
    """``POST workflow-runs/{id}/cancel``; seed 002 names the run by ``execution_id`` (``run_id`` works too)."""
    from apps.workflows import services
    from apps.workflows.models import WorkflowRun

    runs = WorkflowRun.objects.for_org(auth.organization).select_related("execution")
    if data.get("execution_id") not in (None, ""):
        run = runs.filter(execution_id=_uuid_or_404(data["execution_id"])).first()
    elif data.get("run_id") not in (None, ""):
        run = runs.filter(pk=_uuid_or_404(data["run_id"])).first()
    else:
        raise exceptions.ValidationError({"execution_id": ["This field is required."]})
    if run is None:
        raise exceptions.NotFound()
    run = services.workflow_run_cancel(run=run, actor=user)
    run.execution.refresh_from_db(fields=["status", "cancel_requested"])
    return {"success": True, "run_id": run.pk, "execution_id": run.execution_id, "workflow_id": run.workflow_id,
            "status": run.execution.status, "cancel_requested": True}


def _agent_execute(*, user, auth, data, request):
    """``POST agents/{id}/execute`` with ``{agent_id, command: AgentCommand, params?}``; the run's
    progress arrives as events (``agent:execution_started``…), not as a wait on the socket."""
    from apps.agents.models import Agent
    from apps.crews import services
    from apps.crews.models import ExecutionKind
    from apps.crews.serializers import AgentExecuteSerializer

    agent = Agent.objects.for_org(auth.organization).filter(pk=_uuid_or_404(_require(data, "agent_id"))).first()
    if agent is None:
        raise exceptions.NotFound()
    services.agent_check_runnable(agent=agent)
    body = {key: data[key] for key in ("command", "params") if key in data}
    serializer = AgentExecuteSerializer(data=body, context={"request": request})
    serializer.is_valid(raise_exception=True)
    valid = serializer.validated_data
    command = valid["command"]
    execution = services.execution_create(
        organization=auth.organization, actor=user, kind=ExecutionKind.AGENT_EXECUTE, agent=agent,
        run_name=f"{agent.name} - {command['action']}",
        definition={"action": command["action"], "parameters": command["parameters"],
                    "context": command["context"], "user_id": command.get("user_id") or str(user.pk),
                    "request_id": command.get("request_id") or data.get("request_id") or "",
                    "voice_input": command["voice_input"]},
        params=valid["params"], priority=services.PRIORITY_NAMES[command["priority"]])
    return {"success": True, "agent_id": agent.pk, "execution_id": execution.pk, "status": execution.status}


def _voice_command(*, user, auth, data, request):
    """``POST voice/process`` (seed 002 ``VoiceProcessingRequest``)."""
    from apps.voice import services
    from apps.voice.serializers import VoiceProcessSerializer
    from apps.voice.views import _process_body

    body = {key: value for key, value in data.items() if key != "request_id"}
    serializer = VoiceProcessSerializer(data=body, context={"request": request})
    serializer.is_valid(raise_exception=True)
    valid = serializer.validated_data
    language = valid.get("language") or services.voice_settings_get(
        organization=auth.organization, user=user)["language"]
    command = services.voice_process(
        organization=auth.organization, actor=user, text_fallback=valid.get("text_fallback", ""),
        audio=valid.get("audio_data") or None, audio_filename=f"audio.{valid['audio_format']}", language=language,
        context=valid.get("context") or {}, execute=valid["execute"], source="websocket")
    return {"success": True, **_process_body(command)}


def _voice_stop_listening(*, user, auth, data, request):
    """Nothing listens on the server between commands (audio arrives whole in ``voice:command``)."""
    return {"success": True, "listening": False}


def _system_modify(*, user, auth, data, request):
    """``POST system/modify``: ``{type, target_id?, changes, description?}``; seed 002's
    ``SystemModification`` shape is accepted too (``after_state`` = the changes)."""
    from apps.system import services
    from apps.system.serializers import ModifyBodySerializer, SystemModificationSerializer

    body = {key: data[key] for key in ("type", "target_id", "changes", "description") if key in data}
    if "changes" not in body and "after_state" in data:
        body["changes"] = data["after_state"]
    serializer = ModifyBodySerializer(data=body, context={"request": request})
    serializer.is_valid(raise_exception=True)
    valid = serializer.validated_data
    modification = services.modification_apply(
        organization=auth.organization, actor=user, type=valid["type"], changes=valid["changes"],
        target_id=valid.get("target_id") or None, description=valid.get("description", ""))
    return {"success": True, "modification": SystemModificationSerializer(modification).data}


def _system_architecture(*, user, auth, data, request):
    """``GET system/architecture``."""
    from apps.system import selectors

    return selectors.architecture(organization=auth.organization)


def _view(module: str, name: str):
    def load():
        from importlib import import_module

        return getattr(import_module(module), name)
    return load


EVENTS: dict[str, ClientEvent] = {
    "workflow:execute": ClientEvent(_view("apps.workflows.views", "WorkflowViewSet"), "execute", "POST",
                                    _workflow_execute),
    "workflow:stop": ClientEvent(_view("apps.workflows.views", "WorkflowRunViewSet"), "cancel", "POST",
                                 _workflow_stop),
    "agent:execute": ClientEvent(_view("apps.crews.views", "AgentRunViewSet"), "execute", "POST", _agent_execute),
    "voice:command": ClientEvent(_view("apps.voice.views", "VoiceProcessView"), None, "POST", _voice_command),
    "voice:stop_listening": ClientEvent(_view("apps.voice.views", "VoiceProcessView"), None, "POST",
                                        _voice_stop_listening),
    "system:modify": ClientEvent(_view("apps.system.views", "ModifyView"), None, "POST", _system_modify),
    "system:subscribe_architecture": ClientEvent(_view("apps.system.views", "ArchitectureView"), None, "GET",
                                                 _system_architecture),
}
assert set(EVENTS) == set(NAMES)


def error_data(exc: BaseException) -> dict:
    """The REST envelope of ``exc`` as socket error data: ``error_code`` (the envelope's ``code``),
    ``error_message`` (its ``detail``), ``status`` (the HTTP status REST answers) and ``errors``."""
    response = exception_handler(exc, {})
    body = dict(response.data)
    extra = {k: v for k, v in body.items() if k not in ("detail", "code", "errors", "request_id", "type")}
    return {"error_code": body.get("code"), "error_message": body.get("detail"), "error_type": body.get("type"),
            "status": response.status_code, "errors": body.get("errors") or [], **extra}


def run(name: str, *, user, auth, data: dict) -> tuple[bool, dict]:
    event = EVENTS[name]
    request = _rest_request(user, auth, data, event.method)
    try:
        check_rest_permissions(event.view(), action=event.action, method=event.method, request=request)
        return True, event.handler(user=user, auth=auth, data=data, request=request)
    except Exception as exc:  # noqa: BLE001 — every error becomes the REST envelope (500 logged there)
        return False, error_data(exc)
