from drf_spectacular.utils import OpenApiParameter, extend_schema

from apps.audit.filters import AuditEventFilter
from apps.audit.models import AuditEvent
from apps.audit.serializers import AuditEventSerializer
from kai_platform.api.renderers import (
    EXPORT_FORMATS,
    JSONLinesRenderer,
    KaiJSONRenderer,
    NDJSONRenderer,
    stream_json_lines,
)
from kai_platform.tenancy.roles import ADMIN_ROLES
from kai_platform.tenancy.viewsets import READ_ONLY, TenantScopedViewSet


@extend_schema(tags=["audit"])
class AuditEventViewSet(TenantScopedViewSet):
    """The organization's audit trail, newest first; owners and admins only.
    ``Accept: application/x-ndjson`` or ``?format=ndjson|jsonl`` exports every match."""

    model = AuditEvent
    serializer_class = AuditEventSerializer
    http_method_names = READ_ONLY
    filterset_class = AuditEventFilter
    action_roles = {"*": ADMIN_ROLES}
    renderer_classes = [KaiJSONRenderer, NDJSONRenderer, JSONLinesRenderer]

    def scope_queryset(self, queryset):
        return queryset.select_related("actor").order_by("-id")

    @extend_schema(parameters=[OpenApiParameter("format", str, enum=["json", "ndjson", "jsonl"])])
    def list(self, request, *args, **kwargs):
        renderer = request.accepted_renderer
        if renderer.format not in EXPORT_FORMATS:
            return super().list(request, *args, **kwargs)
        queryset = self.filter_queryset(self.get_queryset())
        rows = (AuditEventSerializer(row).data for row in queryset.iterator(chunk_size=2000))
        return stream_json_lines(rows, renderer=renderer, filename="audit")
