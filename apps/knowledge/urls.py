"""API routes of apps.knowledge (registered on the shared router)."""

from django.urls import path

from apps.knowledge import views
from kai_platform.api.routers import router

router.register("knowledge-bases", views.KnowledgeBaseViewSet, basename="knowledge-base")
router.register(
    r"knowledge-bases/(?P<knowledge_base_id>[^/.]+)/documents", views.DocumentViewSet, basename="knowledge-document"
)
router.register("knowledge-graph/entities", views.EntityViewSet, basename="knowledge-entity")
router.register("knowledge-graph/relationships", views.RelationshipViewSet, basename="knowledge-relationship")

urlpatterns = [
    path("knowledge-graph/neighbourhood", views.NeighbourhoodView.as_view(), name="knowledge-neighbourhood"),
    path("knowledge-graph/extractions", views.ExtractionView.as_view(), name="knowledge-extractions"),
    path(
        "knowledge-graph/extractions/<uuid:execution_id>",
        views.ExtractionDetailView.as_view(),
        name="knowledge-extraction",
    ),
    path(
        "knowledge-graph/extractions/<uuid:execution_id>/apply",
        views.ExtractionApplyView.as_view(),
        name="knowledge-extraction-apply",
    ),
]
