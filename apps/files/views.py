from django.http import FileResponse
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response

from apps.files import selectors, services
from apps.files.filters import StoredFileFilter
from apps.files.models import StoredFile
from apps.files.serializers import (
    StoredFileSerializer,
    UploadResponseSerializer,
    UploadSerializer,
)
from apps.files.uploads import CappedUploadHandler
from kai_platform.tenancy.viewsets import NO_UPDATE, TenantScopedViewSet


def store_uploads(request, serializer_class, *, organization, agent_id=None) -> Response:
    """Store every multipart ``file`` of the request; 201 with the stored files and their total size."""
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    values = serializer.validated_data
    stored = [
        services.file_store(
            organization=organization,
            user=request.user,
            upload=upload,
            declared_content_type=getattr(upload, "content_type", "") or "",
            agent_id=agent_id or values.get("agent_id"),
            execution_id=values.get("execution_id"),
            metadata=values.get("metadata"),
        )
        for upload in values["file"]
    ]
    return Response(
        {"files": StoredFileSerializer(stored, many=True).data, "total_size": sum(f.size for f in stored)},
        status=status.HTTP_201_CREATED,
    )


@extend_schema(tags=["files"])
class FileViewSet(TenantScopedViewSet):
    """Organization files (seed 000). Upload with multipart field ``file`` (repeatable);
    every role may upload; content types are sniffed from the bytes; downloads are attachments."""

    model = StoredFile
    serializer_class = StoredFileSerializer
    http_method_names = NO_UPDATE
    filterset_class = StoredFileFilter
    parser_classes = [MultiPartParser]

    def initialize_request(self, request, *args, **kwargs):
        # Size caps are enforced while the multipart body streams (before DRF parses it).
        request.upload_handlers = [CappedUploadHandler(request)]
        return super().initialize_request(request, *args, **kwargs)

    def scope_queryset(self, queryset):
        return queryset.order_by("-created_at")

    @extend_schema(request={"multipart/form-data": UploadSerializer}, responses={201: UploadResponseSerializer})
    @action(detail=False, methods=["post"], url_path="upload", parser_classes=[MultiPartParser])
    def upload(self, request):
        return store_uploads(request, UploadSerializer, organization=self.organization)

    @extend_schema(request={"multipart/form-data": UploadSerializer}, responses={201: UploadResponseSerializer})
    def create(self, request, *args, **kwargs):
        return self.upload(request)  # type: ignore[call-arg,misc]  # drf-stubs type an @action as an unbound callable

    @extend_schema(responses={(200, "*/*"): bytes})  # the stored file's own (sniffed) content type
    @action(detail=True, methods=["get"], url_path="download")
    def download(self, request, pk=None):
        stored = self.get_object()
        response = FileResponse(
            selectors.open_file(stored=stored),
            as_attachment=True,
            filename=stored.name,
            content_type=stored.content_type,
        )
        response["X-Content-Type-Options"] = "nosniff"
        response["Content-Security-Policy"] = "default-src 'none'; sandbox"
        response["X-Checksum-SHA256"] = stored.sha256
        return response

    def perform_destroy(self, instance):
        services.file_delete(stored=instance, actor=self.request.user)
