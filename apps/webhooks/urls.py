"""API routes of apps.webhooks (registered on the shared router)."""

urlpatterns: list = []
