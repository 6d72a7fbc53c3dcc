"""Where the console's data lives: the run engine's models, looked up by name in one place so the
console follows them when they move between apps (``crews`` today, ``runs`` later)."""
from __future__ import annotations

from django.apps import apps as django_apps

#: app labels that may hold the run engine's models, newest home first
RUN_APPS = ("runs", "crews")


def run_model(name: str):
    """The run engine's model ``name`` (``Execution``, ``TraceSpan``, ``ExecutionLog``, ``ExecutionEvent``,
    ``UsageRollup``, ``Crew``) from whichever app holds it."""
    for label in RUN_APPS:
        try:
            return django_apps.get_model(label, name)
        except LookupError:
            continue
    raise LookupError(f"no installed app holds the run model {name!r}")


def workflow_model(name: str):
    """``Workflow``, ``WorkflowRun`` or ``StepRun`` of apps.workflows, or None when it is not installed."""
    try:
        return django_apps.get_model("workflows", name)
    except LookupError:
        return None


def metric_model():
    return django_apps.get_model("system", "MetricRollup")


TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")
