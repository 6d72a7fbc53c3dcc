"""Serializer bases: unknown body fields are refused (400 naming them) rather than silently dropped.
Read-only fields (ids, organization, owner, counters) are known, and ignored on input."""
from __future__ import annotations

from rest_framework import serializers


class StrictFieldsMixin:
    def to_internal_value(self, data):
        if isinstance(data, dict):
            known = set(self.fields.keys())
            unknown = sorted(str(key) for key in data.keys() if key not in known)
            if unknown:
                raise serializers.ValidationError({key: ["Unknown field."] for key in unknown})
        return super().to_internal_value(data)


class KaiSerializer(StrictFieldsMixin, serializers.Serializer):
    pass


class KaiModelSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    pass


class JSONObjectField(serializers.JSONField):
    """A JSON object (dict), size-capped."""

    default_error_messages = {
        "not_object": "Must be a JSON object.",
        "too_large": "Must serialize to at most {max_bytes} bytes.",
    }

    def __init__(self, *args, max_bytes: int = 65536, **kwargs):
        self.max_bytes = max_bytes
        super().__init__(*args, **kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not isinstance(value, dict):
            self.fail("not_object")
        from kai_platform.api.renderers import dumps

        if len(dumps(value)) > self.max_bytes:
            self.fail("too_large", max_bytes=self.max_bytes)
        return value


def validated(serializer_class, request, *, data=None, **context) -> dict:
    """Validate the request body (or ``data``) with ``serializer_class``; 400 envelope on error."""
    serializer = serializer_class(data=request.data if data is None else data,
                                  context={"request": request, **context})
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data
