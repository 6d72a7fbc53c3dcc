from drf_spectacular.utils import OpenApiParameter, extend_schema

from apps.events.filters import EventFilter
from apps.events.models import Event
from apps.events.selectors import visible_events
from apps.events.serializers import EventSerializer
from apps.events.services import serialize_event
from kai_platform.api.renderers import (
    EXPORT_FORMATS,
    JSONLinesRenderer,
    KaiJSONRenderer,
    NDJSONRenderer,
    stream_json_lines,
)
from kai_platform.tenancy.viewsets import READ_ONLY, TenantScopedViewSet


@extend_schema(tags=["events"])
class EventViewSet(TenantScopedViewSet):
    """The organization's event log, oldest first (seq order). ``?after=<seq>`` resumes;
    ``Accept: application/x-ndjson`` or ``?format=ndjson|jsonl`` streams every match as lines."""

    model = Event
    serializer_class = EventSerializer
    http_method_names = READ_ONLY
    filterset_class = EventFilter
    renderer_classes = [KaiJSONRenderer, NDJSONRenderer, JSONLinesRenderer]

    def scope_queryset(self, queryset):
        return visible_events(queryset=queryset, user=self.request.user, role=self.role).order_by("id")

    @extend_schema(parameters=[OpenApiParameter("format", str, enum=["json", "ndjson", "jsonl"])])
    def list(self, request, *args, **kwargs):
        renderer = request.accepted_renderer
        if renderer.format not in EXPORT_FORMATS:
            return super().list(request, *args, **kwargs)
        queryset = self.filter_queryset(self.get_queryset())
        rows = (serialize_event(event) for event in queryset.iterator(chunk_size=2000))
        return stream_json_lines(rows, renderer=renderer, filename="events")
