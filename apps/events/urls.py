from apps.events import views
from kai_platform.api.routers import router

router.register("events", views.EventViewSet, basename="event")

urlpatterns: list = []
