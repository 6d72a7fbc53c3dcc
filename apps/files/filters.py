import django_filters

from apps.files.models import StoredFile
from kai_platform.api.filters import IsoDateTimeFilter


class StoredFileFilter(django_filters.FilterSet):
    name = django_filters.CharFilter(field_name="name", lookup_expr="icontains")
    content_type = django_filters.CharFilter(field_name="content_type", lookup_expr="istartswith")
    agent = django_filters.UUIDFilter(field_name="agent_id")
    execution = django_filters.UUIDFilter(field_name="execution_id")
    agent_id = django_filters.UUIDFilter(field_name="agent_id", help_text="Same as `agent` (seed 000 spelling).")
    execution_id = django_filters.UUIDFilter(field_name="execution_id", help_text="Same as `execution`.")
    uploaded_by = django_filters.UUIDFilter(field_name="created_by_id")
    sha256 = django_filters.CharFilter(field_name="sha256")
    since = IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = StoredFile
        fields = [
            "name",
            "content_type",
            "agent",
            "agent_id",
            "execution",
            "execution_id",
            "uploaded_by",
            "sha256",
            "since",
            "until",
        ]
