"""The workflows app's methods on the agents' MCP socket (``apps.agents.mcp``), registered by
``WorkflowsConfig.ready``."""

from __future__ import annotations

import uuid

from apps.agents.mcp import INVALID_PARAMS, NOT_FOUND, MCPError, method
from apps.workflows.models import Workflow
from apps.workflows.services import workflow_start
from kai_platform.tenancy.roles import HUMAN_ROLES


@method("workflow.execute", roles=HUMAN_ROLES | {"agent"})
def workflow_execute(*, params, request, user, auth):
    """Start a run of one of the organization's workflows: ``{workflow_id, input_data?, priority?}``
    → ``{run_id, execution_id, workflow_id, version, status}`` (the run goes on in the background)."""
    workflow_id, input_data = params.get("workflow_id"), params.get("input_data") or {}
    priority = params.get("priority") or "normal"
    if not isinstance(input_data, dict) or priority not in ("low", "normal", "high"):
        raise MCPError(INVALID_PARAMS, "input_data is an object; priority is low, normal or high.")
    try:
        workflow = Workflow.objects.for_org(auth.organization).filter(pk=uuid.UUID(str(workflow_id))).first()
    except ValueError:
        workflow = None
    if workflow is None:
        raise MCPError(NOT_FOUND, f"No workflow {workflow_id!r} in this organization.")
    run = workflow_start(
        workflow=workflow,
        actor=user,
        inputs=input_data,
        trigger_type="manual",
        trigger_source=f"mcp:{request.get('id') or ''}",
        priority=priority,
    )
    return {
        "run_id": str(run.pk),
        "execution_id": str(run.execution_id),
        "workflow_id": str(workflow.pk),
        "version": run.version,
        "status": run.execution.status,
    }
