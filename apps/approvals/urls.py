"""API routes of apps.approvals (registered on the shared router)."""

urlpatterns: list = []
