"""What the agents app's serializers share."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers


@extend_schema_field({"oneOf": [{"type": "object", "additionalProperties": True}, {"type": "string"}]})
class ConfigField(serializers.JSONField):
    """A JSON object, or a string holding JSON (parsed with line numbers on error by the service)."""
