"""What the crews app's serializers share: the server-owned fields and the run priority field."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.runs.services import PRIORITY_NAMES

OWNED = ("id", "created_at", "updated_at")


@extend_schema_field(
    {"oneOf": [{"type": "string", "enum": list(PRIORITY_NAMES)}, {"type": "integer", "minimum": 0, "maximum": 9}]}
)
class PriorityField(serializers.Field):
    """``low|normal|high`` or 0…9 (9 runs first)."""

    default_error_messages = {"invalid": "Must be low, normal, high or an integer 0…9."}

    def to_internal_value(self, data):
        if isinstance(data, str) and data.lower() in PRIORITY_NAMES:
            return PRIORITY_NAMES[data.lower()]
        try:
            value = int(data)
        except (TypeError, ValueError):
            self.fail("invalid")
        if not 0 <= value <= 9:
            self.fail("invalid")
        return value

    def to_representation(self, value):
        return value
