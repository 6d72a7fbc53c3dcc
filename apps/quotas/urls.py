"""API routes of apps.quotas (registered on the shared router)."""

urlpatterns: list = []
