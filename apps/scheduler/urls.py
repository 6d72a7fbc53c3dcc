from apps.scheduler import views
from kai_platform.api.routers import router

router.register("scheduler/schedules", views.ScheduleViewSet, basename="schedule")

urlpatterns: list = []
