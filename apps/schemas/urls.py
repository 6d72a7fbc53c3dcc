"""API routes of apps.schemas (registered on the shared router)."""

from apps.schemas import views
from kai_platform.api.routers import router

router.register("schemas", views.JsonSchemaViewSet, basename="json-schema")

urlpatterns: list = []
