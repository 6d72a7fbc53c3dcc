"""API routes of apps.approvals (registered on the shared router)."""

from apps.approvals import views
from kai_platform.api.routers import router

router.register("approvals", views.ApprovalViewSet, basename="approval")

urlpatterns: list = []
