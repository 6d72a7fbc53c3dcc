"""Hub client events of the system app (``apps.events.client_events``): thin adapters over its REST
services, registered by its ``AppConfig.ready``."""

from __future__ import annotations

from apps.events.client_events import register
from apps.system import selectors, services


def _views():
    # deferred: start-up — AppConfig.ready loads this module in every process; views and serializers load on the first client event
    from apps.system import views

    return views


@register("system:modify", view=lambda: _views().ModifyView, action=None, method="POST")
def _system_modify(*, user, auth, data, request):
    """``POST system/modify``: ``{type, target_id?, changes, description?}``; the
    ``SystemModification`` shape (docs/observability.md) is accepted too (``after_state`` = the changes)."""
    # deferred: start-up — AppConfig.ready loads this module in every process; views and serializers load on the first client event
    from apps.system.serializers import ModifyBodySerializer, SystemModificationSerializer

    body = {key: data[key] for key in ("type", "target_id", "changes", "description") if key in data}
    if "changes" not in body and "after_state" in data:
        body["changes"] = data["after_state"]
    serializer = ModifyBodySerializer(data=body, context={"request": request})
    serializer.is_valid(raise_exception=True)
    valid = serializer.validated_data
    modification = services.modification_apply(
        organization=auth.organization,
        actor=user,
        type=valid["type"],
        changes=valid["changes"],
        target_id=valid.get("target_id") or None,
        description=valid.get("description", ""),
    )
    return {"success": True, "modification": SystemModificationSerializer(modification).data}


@register("system:subscribe_architecture", view=lambda: _views().ArchitectureView, action=None, method="GET")
def _system_architecture(*, user, auth, data, request):
    """``GET system/architecture``."""
    return selectors.architecture(organization=auth.organization)
