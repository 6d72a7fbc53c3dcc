"""API routes of apps.quotas (registered on the shared router)."""

from django.urls import path

from apps.quotas import views
from kai_platform.api.routers import router

router.register("quotas/refusals", views.QuotaRefusalViewSet, basename="quota-refusal")

urlpatterns: list = [
    path("quotas", views.QuotaStatusView.as_view(), name="quotas"),
]
