from django.urls import path

from apps.files import views
from kai_platform.api.routers import router

router.register("files", views.FileViewSet, basename="file")

urlpatterns: list = [
    path("agents/<uuid:pk>/upload", views.AgentUploadView.as_view(), name="agent-upload"),
]
