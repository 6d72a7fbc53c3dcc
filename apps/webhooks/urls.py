"""API routes of apps.webhooks (registered on the shared router)."""

from apps.webhooks import views
from kai_platform.api.routers import router

router.register("webhooks", views.WebhookViewSet, basename="webhook")
router.register("webhook-deliveries", views.WebhookDeliveryViewSet, basename="webhook-delivery")

urlpatterns: list = []
