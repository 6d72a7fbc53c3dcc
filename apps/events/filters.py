import django_filters
from django import forms

from apps.events.models import Event
from kai_platform.api.filters import IsoDateTimeFilter


class CharInFilter(django_filters.BaseInFilter, django_filters.CharFilter):
    pass


class IntegerFilter(django_filters.NumberFilter):
    field_class = forms.IntegerField  # a seq is a whole number: 0.5 is a 400, not "after 0"


class EventFilter(django_filters.FilterSet):
    after = IntegerFilter(field_name="id", lookup_expr="gt", help_text="Only events with seq > after.")
    type = CharInFilter(field_name="type", lookup_expr="in", help_text="One type or a comma-separated list.")
    type_prefix = django_filters.CharFilter(field_name="type", lookup_expr="startswith")
    agent = django_filters.UUIDFilter(field_name="agent_id")
    execution = django_filters.UUIDFilter(field_name="execution_id")
    severity = CharInFilter(field_name="severity", lookup_expr="in")
    since = IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Event
        fields = ["after", "type", "type_prefix", "agent", "execution", "severity", "since", "until"]
