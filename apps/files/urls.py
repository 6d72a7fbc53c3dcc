from apps.files import views
from kai_platform.api.routers import router

router.register("files", views.FileViewSet, basename="file")

urlpatterns: list = []
