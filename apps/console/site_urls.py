"""Pages of the operator console outside the admin: the live dashboard and its chart data, a run's
page (waterfall), a workflow's and a crew's graph."""

from django.urls import path

from apps.console import views, views_pages

urlpatterns: list = [
    path("dashboard", views.DashboardView.as_view(), name="console-dashboard"),
    path("dashboard/token", views.DashboardTokenView.as_view(), name="console-token"),
    path("dashboard/data", views.DashboardDataView.as_view(), name="console-data"),
    path("dashboard/runs/<uuid:execution_id>", views.DashboardRunView.as_view(), name="console-run"),
    path("dashboard/charts", views_pages.ChartsDataView.as_view(), name="console-charts"),
    path("dashboard/run/<uuid:execution_id>", views_pages.RunPageView.as_view(), name="console-run-page"),
    path("dashboard/run/<uuid:execution_id>/trace", views_pages.RunTraceView.as_view(), name="console-run-trace"),
    path(
        "dashboard/run/<uuid:execution_id>/cancel",
        views_pages.RunActionView.as_view(),
        {"action": "cancel"},
        name="console-run-cancel",
    ),
    path(
        "dashboard/run/<uuid:execution_id>/replay",
        views_pages.RunActionView.as_view(),
        {"action": "replay"},
        name="console-run-replay",
    ),
    path("dashboard/workflows/<uuid:pk>", views_pages.GraphPageView.as_view(kind="workflow"), name="console-workflow"),
    path("dashboard/crews/<uuid:pk>", views_pages.GraphPageView.as_view(kind="crew"), name="console-crew"),
    path("dashboard/login", views.ConsoleLoginView.as_view(), name="console-login"),
    path("dashboard/logout", views.ConsoleLogoutView.as_view(), name="console-logout"),
]
