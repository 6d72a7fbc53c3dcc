"""Where the console's optional data lives: the workflow models and the metric rollups, looked up
by name (the console works without them). The run engine's models are imported from apps.runs."""

from __future__ import annotations

from django.apps import apps as django_apps

from apps.runs.models import TERMINAL_STATUSES


def workflow_model(name: str):
    """``Workflow``, ``WorkflowRun`` or ``StepRun`` of apps.workflows, or None when it is not installed."""
    try:
        return django_apps.get_model("workflows", name)
    except LookupError:
        return None


def metric_model():
    return django_apps.get_model("system", "MetricRollup")


TERMINAL = tuple(sorted(TERMINAL_STATUSES))
