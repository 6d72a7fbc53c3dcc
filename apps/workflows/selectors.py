"""Reads of the workflows app (constant query counts for lists)."""

from __future__ import annotations

from django.db.models import Prefetch

from apps.workflows.models import StepRun, WorkflowRun


def workflows_for_list(*, queryset):
    return queryset.order_by("-created_at", "id")


def runs_for_list(*, queryset):
    return queryset.select_related("execution").order_by("-created_at", "id")


def runs_with_steps(*, queryset):
    steps = StepRun.objects.select_related("execution").order_by("created_at", "fallback", "step_id", "attempt")
    return runs_for_list(queryset=queryset).prefetch_related(Prefetch("step_runs", queryset=steps))


def workflow_history(*, workflow):
    return runs_for_list(queryset=WorkflowRun.objects.for_org(workflow.organization_id).filter(workflow=workflow))
