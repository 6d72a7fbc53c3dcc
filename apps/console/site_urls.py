"""Pages of the operator console outside the admin (the live dashboard)."""

urlpatterns: list = []
