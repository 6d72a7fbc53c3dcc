"""The console's chart data, run page, workflow graph and crew graph. Staff see every
organization; an owner sees the organizations they own (another organization's object is a 404).
Reads come from the console's selectors; the run actions call ``apps.console.services``."""

from __future__ import annotations

from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from rest_framework.exceptions import APIException

from apps.console import selectors_charts, selectors_graphs, selectors_runs, services
from apps.console.views import ConsoleScope, ConsoleView

ZERO = "00000000-0000-0000-0000-000000000000"


def _allowed(scope, organization_id) -> bool:
    """Staff: any organization (or the one they narrowed to); an owner: the ones they own."""
    if scope.platform:
        return scope.organization is None or scope.organization.pk == organization_id
    return any(o.pk == organization_id for o in scope.organizations)


def _urls() -> dict:
    return {
        "dashboard": reverse("console-dashboard"),
        "run_page": reverse("console-run-page", args=[ZERO]),
        "run_trace": reverse("console-run-trace", args=[ZERO]),
        "workflow_page": reverse("console-workflow", args=[ZERO]),
        "crew_page": reverse("console-crew", args=[ZERO]),
    }


class ChartsDataView(ConsoleView):
    """``GET /dashboard/charts?window=1h|24h|7d``: the dashboard's chart series (one JSON)."""

    json = True

    def get(self, request):
        window = request.GET.get("window") or selectors_charts.DEFAULT_WINDOW
        if window not in selectors_charts.WINDOWS:
            return JsonResponse(
                {
                    "detail": f"window must be one of {', '.join(selectors_charts.WINDOWS)}.",
                    "type": "validation_error",
                    "code": "GENERAL_001",
                    "errors": [{"field": "window", "message": "unknown window"}],
                },
                status=400,
            )
        data = selectors_charts.charts(organization=self.scope.organization, window=window)
        return JsonResponse(data, headers={"Cache-Control": "no-store"})


class RunMixin:
    scope: ConsoleScope  # of the ConsoleView it is mixed into

    def execution_or_404(self, execution_id):
        execution = selectors_runs.scoped_execution(organization=None, execution_id=execution_id)
        if execution is None or not _allowed(self.scope, execution.organization_id):
            raise Http404("No such run in this scope.")
        return execution


class RunPageView(RunMixin, ConsoleView):
    def get(self, request, execution_id):
        execution = self.execution_or_404(execution_id)
        trace = selectors_runs.run_trace(execution=execution)
        return render(
            request,
            "console/run.html",
            {
                "trace": trace,
                "run": trace["run"],
                "message": request.GET.get("message", ""),
                "config": {
                    "urls": _urls(),
                    "execution_id": str(execution.pk),
                    "staff": request.user.is_staff,
                    "admin_url": reverse("admin:index") if request.user.is_staff else None,
                },
            },
        )


class RunTraceView(RunMixin, ConsoleView):
    json = True

    def get(self, request, execution_id):
        execution = self.execution_or_404(execution_id)
        return JsonResponse(selectors_runs.run_trace(execution=execution), headers={"Cache-Control": "no-store"})


class RunActionView(RunMixin, ConsoleView):
    """``POST /dashboard/run/<id>/cancel|replay``: through the run engine's services, then back to
    the run page (a replay opens the new run)."""

    def post(self, request, execution_id, action):
        execution = self.execution_or_404(execution_id)
        target, message = execution.pk, ""
        try:
            if action == "cancel":
                services.run_cancel(execution=execution, actor=request.user)
                message = "Cancel requested."
            else:
                target = services.run_replay(execution=execution, actor=request.user).pk
                message = f"Replay of {str(execution.pk)[:8]} started."
        except APIException as exc:
            message = str(exc.detail)
        return redirect(f"{reverse('console-run-page', args=[target])}?message={message}")


class GraphPageView(ConsoleView):
    """A workflow's DAG or a crew's agents and tasks, with its recent runs."""

    kind = "workflow"  # or "crew"

    def get(self, request, pk):
        read = selectors_graphs.workflow_graph if self.kind == "workflow" else selectors_graphs.crew_graph
        data = read(organization=None, pk=pk)
        if data is None or not _allowed(self.scope, data[self.kind]["organization_id"]):
            raise Http404(f"No such {self.kind} in this scope.")
        return render(
            request,
            "console/graph.html",
            {
                "title": f"{self.kind.title()} {data[self.kind]['name']}",
                "data": data,
                "config": {"urls": _urls(), "kind": self.kind},
            },
        )
