from apps.audit import views
from kai_platform.api.routers import router

router.register("audit", views.AuditEventViewSet, basename="audit")

urlpatterns: list = []
