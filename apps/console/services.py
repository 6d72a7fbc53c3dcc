"""Writes of the operator console: the short-lived socket token of a dashboard session."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from rest_framework_simplejwt.tokens import AccessToken

from apps.console.sources import workflow_model
from apps.runs.services import execution_cancel, execution_retry
from apps.workflows.services import workflow_run_cancel, workflow_start
from kai_platform.api.errors import Conflict


def console_token_issue(*, user) -> dict:
    """An access token for the logged-in session user, for the console socket only to use.

    It lives ``KAI_CONSOLE_TOKEN_SECONDS`` (default 300): the socket closes when it expires and the
    page fetches a new one and resumes from the last seq it saw. Nothing is stored; it can't be
    refreshed, and it grants what the user's own login grants.
    """
    token = AccessToken.for_user(user)
    lifetime = timedelta(seconds=settings.KAI_CONSOLE_TOKEN_SECONDS)
    token.set_exp(lifetime=lifetime)
    token["sid"] = f"console-{uuid.uuid4().hex}"
    token["scope"] = "console"
    return {"token": str(token), "expires_in": int(lifetime.total_seconds())}


def run_cancel(*, execution, actor):
    """Cancel a run from the console: a workflow run through its workflow (its live steps stop
    too), any other run through the run engine. Raises ``Conflict`` when it already ended."""
    WorkflowRun = workflow_model("WorkflowRun")
    run = (
        WorkflowRun.objects.filter(execution=execution).first()
        if WorkflowRun and execution.kind == "workflow"
        else None
    )
    if run is not None:
        workflow_run_cancel(run=run, actor=actor, reason="cancelled from the console")
        return execution

    return execution_cancel(execution=execution, actor=actor, reason="cancelled from the console")


def run_replay(*, execution, actor):
    """Run an ended run again (same definition and inputs) and return the new run's execution: a
    workflow run starts its workflow's current version with the same inputs."""
    WorkflowRun = workflow_model("WorkflowRun")
    run = (
        WorkflowRun.objects.select_related("workflow").filter(execution=execution).first()
        if WorkflowRun and execution.kind == "workflow"
        else None
    )
    if run is not None:
        if not execution.is_terminal:
            raise Conflict(f"The run has not ended ({execution.status}).")
        return workflow_start(workflow=run.workflow, actor=actor, inputs=run.inputs).execution

    return execution_retry(execution=execution, actor=actor)
