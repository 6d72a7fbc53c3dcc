"""Hub client events of the workflows app (``apps.events.client_events``): thin adapters over its REST
services, registered by its ``AppConfig.ready``."""

from __future__ import annotations

from rest_framework import exceptions

from apps.events.client_events import register, require, uuid_or_404
from apps.workflows import services
from apps.workflows.models import Workflow, WorkflowRun
from kai_platform.tenancy.viewsets import raise_not_found


def _views():
    # deferred: start-up — AppConfig.ready loads this module in every process; views and serializers load on the first client event
    from apps.workflows import views

    return views


@register("workflow:execute", view=lambda: _views().WorkflowViewSet, action="execute", method="POST")
def _workflow_execute(*, user, auth, data, request):
    """``POST workflows/{id}/execute`` (no ``wait_for_completion``: the socket answers at once)."""
    # deferred: start-up — AppConfig.ready loads this module in every process; views and serializers load on the first client event
    from apps.workflows.serializers import WorkflowExecuteSerializer
    from apps.workflows.views import _started_body

    workflow_id = uuid_or_404(require(data, "workflow_id"))
    workflow = Workflow.objects.for_org(auth.organization).filter(pk=workflow_id).first()
    if workflow is None:
        raise_not_found(Workflow)  # the REST view's 404: WORKFLOW_001 and its detail
    body = {key: data[key] for key in ("inputs", "input_data", "priority") if key in data}
    if "inputs" not in body and "data" in data:  # seed 002 ``workflow:execute(workflow_id, data?)``
        body["inputs"] = data["data"]
    serializer = WorkflowExecuteSerializer(data=body, context={"request": request})
    serializer.is_valid(raise_exception=True)
    valid = serializer.validated_data
    inputs = valid["inputs"] if valid.get("inputs") is not None else valid["input_data"]
    run = services.workflow_start(
        workflow=workflow,
        actor=user,
        inputs=inputs,
        trigger_type="manual",
        trigger_source=f"ws:{user.pk}",
        priority=valid["priority"],
    )
    return {"success": True, **_started_body(run)}


@register("workflow:stop", view=lambda: _views().WorkflowRunViewSet, action="cancel", method="POST")
def _workflow_stop(*, user, auth, data, request):
    """``POST workflow-runs/{id}/cancel``; the socket event (docs/sockets.md) names the run by
    ``execution_id`` (``run_id`` works too)."""
    runs = WorkflowRun.objects.for_org(auth.organization).select_related("execution")
    if data.get("execution_id") not in (None, ""):
        run = runs.filter(execution_id=uuid_or_404(data["execution_id"])).first()
    elif data.get("run_id") not in (None, ""):
        run = runs.filter(pk=uuid_or_404(data["run_id"])).first()
    else:
        raise exceptions.ValidationError({"execution_id": ["This field is required."]})
    if run is None:
        raise_not_found(WorkflowRun)
    run = services.workflow_run_cancel(run=run, actor=user)
    run.execution.refresh_from_db(fields=["status", "cancel_requested"])
    return {
        "success": True,
        "run_id": run.pk,
        "execution_id": run.execution_id,
        "workflow_id": run.workflow_id,
        "status": run.execution.status,
        "cancel_requested": True,
    }
