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
    """``low|normal|high`` or 0…9 (9 runs first). In a JSON body the number is a JSON integer, as the
    document says (``"5"``, ``true`` or ``2.5`` are refused); a form's text ``5`` is read as a number."""

    default_error_messages = {"invalid": "Must be low, normal, high or an integer 0…9."}

    def to_internal_value(self, data):
        if isinstance(data, str) and data.lower() in PRIORITY_NAMES:
            return PRIORITY_NAMES[data.lower()]
        if isinstance(data, bool) or (isinstance(data, str) and self._json_body()):
            self.fail("invalid")
        if isinstance(data, float) and not data.is_integer():
            self.fail("invalid")
        try:
            value = int(data)
        except (TypeError, ValueError):
            self.fail("invalid")
        if not 0 <= value <= 9:
            self.fail("invalid")
        return value

    def _json_body(self) -> bool:
        request = self.context.get("request")
        return request is None or "json" in (getattr(request, "content_type", "") or "json")

    def to_representation(self, value):
        return value
