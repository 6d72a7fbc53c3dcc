"""API routes of apps.workflows (viewsets on the shared router; the webhook is a plain path)."""

from django.urls import path

from apps.workflows import views
from kai_platform.api.routers import router

router.register("workflows", views.WorkflowViewSet, basename="workflow")
router.register("workflow-runs", views.WorkflowRunViewSet, basename="workflow-run")

urlpatterns: list = [
    path("workflow-hooks/<str:token>", views.WorkflowWebhookView.as_view(), name="workflow-webhook"),
]
