"""Pages of the operator console outside the admin (the live dashboard)."""
from django.urls import path

from apps.console import views

urlpatterns: list = [
    path("dashboard", views.DashboardView.as_view(), name="console-dashboard"),
    path("dashboard/token", views.DashboardTokenView.as_view(), name="console-token"),
    path("dashboard/data", views.DashboardDataView.as_view(), name="console-data"),
    path("dashboard/runs/<uuid:execution_id>", views.DashboardRunView.as_view(), name="console-run"),
    path("dashboard/login", views.ConsoleLoginView.as_view(), name="console-login"),
    path("dashboard/logout", views.ConsoleLogoutView.as_view(), name="console-logout"),
]
