from rest_framework import serializers

from apps.events.models import Event
from kai_platform.api.serializers import KaiModelSerializer


class EventSerializer(KaiModelSerializer):
    seq = serializers.IntegerField(source="id", read_only=True)
    timestamp = serializers.DateTimeField(source="created_at", read_only=True)

    class Meta:
        model = Event
        fields = [
            "seq",
            "id",
            "type",
            "timestamp",
            "severity",
            "component",
            "organization",
            "agent_id",
            "execution_id",
            "actor",
            "owner",
            "data",
        ]
        read_only_fields = fields
