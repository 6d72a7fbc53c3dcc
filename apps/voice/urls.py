"""API routes of apps.voice (registered on the shared router)."""

urlpatterns: list = []
