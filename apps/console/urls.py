"""API routes of apps.console (registered on the shared router)."""

urlpatterns: list = []
