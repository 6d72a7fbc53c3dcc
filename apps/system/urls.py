"""API routes of apps.system (registered on the shared router)."""

urlpatterns: list = []
