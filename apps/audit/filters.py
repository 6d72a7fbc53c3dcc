import django_filters

from apps.audit.models import AuditEvent
from kai_platform.api.filters import IsoDateTimeFilter


class AuditEventFilter(django_filters.FilterSet):
    """Seed 003's filters (model_name, operation_type, user_id) plus a date range."""

    model_name = django_filters.CharFilter(
        method="filter_model", help_text="Model label or name, e.g. accounts.ApiKey or ApiKey."
    )
    operation_type = django_filters.CharFilter(method="filter_operation", help_text="create, update, delete, revoke, …")
    user_id = django_filters.UUIDFilter(field_name="actor_id")
    action = django_filters.CharFilter(field_name="action")
    object_id = django_filters.CharFilter(field_name="object_id")
    since = IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = ["model_name", "operation_type", "user_id", "action", "object_id", "since", "until"]

    def filter_model(self, queryset, name, value):
        if "." in value:
            return queryset.filter(model__iexact=value)
        return queryset.filter(model__iendswith=f".{value}")

    def filter_operation(self, queryset, name, value):
        return queryset.filter(action__iendswith=f".{value}")
