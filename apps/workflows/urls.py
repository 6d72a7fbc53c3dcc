"""API routes of apps.workflows (registered on the shared router)."""

urlpatterns: list = []
