"""API routes of apps.stepup (registered on the shared router)."""

urlpatterns: list = []
