"""Serializers of the schemas app."""

from __future__ import annotations

from rest_framework import serializers

from apps.schemas.models import JsonSchema, JsonSchemaVersion
from kai_platform.api.serializers import JSONObjectField, KaiModelSerializer


class JsonSchemaSerializer(KaiModelSerializer):
    name = serializers.RegexField(
        r"^[A-Za-z0-9_.\-]+$", max_length=100, help_text="How crews name it: output_json: <name> (or <name>@<version>)."
    )
    schema = JSONObjectField(help_text="A JSON Schema document (an object). A change makes a new version.")

    class Meta:
        model = JsonSchema
        fields = ["id", "name", "description", "schema", "version", "created_at", "updated_at"]
        read_only_fields = ["id", "version", "created_at", "updated_at"]


class JsonSchemaVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = JsonSchemaVersion
        fields = ["version", "schema", "created_at"]
        read_only_fields = fields
