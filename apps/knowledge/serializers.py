"""Serializers of the knowledge app."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiSerializerExtension
from rest_framework import serializers

from apps.knowledge.models import LANGUAGES, Document, Entity, KnowledgeBase, Relationship
from apps.knowledge.search import MAX_TOP_K, MODES
from kai_platform.api.serializers import JSONObjectField, KaiModelSerializer, KaiSerializer


class KnowledgeBaseSerializer(KaiModelSerializer):
    metadata = JSONObjectField(required=False, max_bytes=16384)
    chunk_size = serializers.IntegerField(required=False, min_value=20, max_value=4000)
    chunk_overlap = serializers.IntegerField(required=False, min_value=0, max_value=1000)
    language = serializers.ChoiceField(choices=LANGUAGES, required=False)
    document_count = serializers.IntegerField(read_only=True, required=False)
    chunk_count = serializers.IntegerField(read_only=True, required=False)
    total_bytes = serializers.IntegerField(read_only=True, required=False)

    class Meta:
        model = KnowledgeBase
        fields = [
            "id",
            "name",
            "description",
            "embedding_model",
            "chunk_size",
            "chunk_overlap",
            "language",
            "metadata",
            "document_count",
            "chunk_count",
            "total_bytes",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "document_count", "chunk_count", "total_bytes", "created_at", "updated_at"]
        extra_kwargs = {"name": {"required": True}}


class DocumentSerializer(KaiModelSerializer):
    knowledge_base_id = serializers.UUIDField(read_only=True)
    file_id = serializers.UUIDField(read_only=True, allow_null=True)
    source_url = serializers.CharField(read_only=True, help_text="The URL a url document was fetched from; empty else.")
    metadata = JSONObjectField(required=False, max_bytes=16384)

    class Meta:
        model = Document
        fields = [
            "id",
            "knowledge_base_id",
            "name",
            "source_type",
            "source_url",
            "file_id",
            "content_type",
            "bytes",
            "sha256",
            "metadata",
            "status",
            "error",
            "chunk_count",
            "token_count",
            "page_count",
            "version",
            "ingested_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [f for f in fields if f not in ("name", "metadata")]


class DocumentCreateSerializer(KaiSerializer):
    """One of: multipart ``file``; JSON ``text`` (with ``name``); JSON ``url``."""

    file = serializers.FileField(required=False, allow_empty_file=False)
    text = serializers.CharField(required=False, allow_blank=False, trim_whitespace=False)
    url = serializers.URLField(required=False, max_length=2000)
    name = serializers.CharField(required=False, max_length=255)
    metadata = JSONObjectField(required=False, max_bytes=16384)

    def validate(self, attrs):
        given = [k for k in ("file", "text", "url") if attrs.get(k)]
        if len(given) != 1:
            raise serializers.ValidationError(
                {"non_field_errors": ["Give exactly one of `file` (multipart), `text` (with `name`) or `url`."]}
            )
        if "text" in given and not attrs.get("name"):
            raise serializers.ValidationError({"name": ["A text document needs a name."]})
        return attrs


class DocumentCreateJSONSerializer(DocumentCreateSerializer):
    """The JSON body (``text`` with ``name``, or ``url``): a file comes only in multipart."""

    file = None  # type: ignore[assignment]  # DRF's way to drop an inherited declared field


#: a document comes from exactly one source (``DocumentCreateSerializer.validate``), with these keys required
DOCUMENT_SOURCES = (("file",), ("text", "name"), ("url",))


def _file(schema: dict) -> dict:
    """A file part, as OpenAPI 3.1 spells it (``contentMediaType``, where 3.0 said ``format: binary``)."""
    return {"type": "string", "contentMediaType": "application/octet-stream"}


class DocumentCreateSchema(OpenApiSerializerExtension):
    """The document states the rule ``validate`` enforces: one variant per source (``oneOf``)."""

    target_class = DocumentCreateSerializer
    match_subclasses = True
    priority = 1  # before the strict-serializer extension, whose output it starts from

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        properties = schema["properties"]
        variants = [
            {
                "type": "object",
                "additionalProperties": False,
                "required": list(group),
                "properties": {
                    k: _file(properties[k]) if k == "file" else properties[k] for k in (*group, "name", "metadata")
                },
            }
            for group in DOCUMENT_SOURCES
            if group[0] in properties
        ]
        return {"description": schema.get("description", ""), "oneOf": variants}


class SearchFiltersSerializer(KaiSerializer):
    document_id = serializers.ListField(child=serializers.UUIDField(), required=False, max_length=100)
    metadata = JSONObjectField(required=False, max_bytes=4096)

    def to_internal_value(self, data):
        if isinstance(data, dict) and isinstance(data.get("document_id"), str):
            data = {**data, "document_id": [data["document_id"]]}
        return super().to_internal_value(data)


class SearchSerializer(KaiSerializer):
    query = serializers.CharField(max_length=4000)
    top_k = serializers.IntegerField(required=False, default=5, min_value=1, max_value=MAX_TOP_K)
    mode = serializers.ChoiceField(choices=MODES, required=False, default="hybrid")
    filters = SearchFiltersSerializer(required=False)


class SearchHitSerializer(serializers.Serializer):
    chunk_id = serializers.UUIDField()
    document_id = serializers.UUIDField()
    document_name = serializers.CharField()
    text = serializers.CharField()
    score = serializers.FloatField()
    position = serializers.IntegerField()
    metadata = serializers.DictField()


class SearchResultSerializer(serializers.Serializer):
    items = SearchHitSerializer(many=True)


class EntitySerializer(KaiModelSerializer):
    properties = JSONObjectField(required=False, max_bytes=32768)
    document_id = serializers.UUIDField(required=False, allow_null=True)

    class Meta:
        model = Entity
        fields = ["id", "type", "label", "properties", "document_id", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]
        extra_kwargs = {"type": {"required": True}, "label": {"required": True}}


class RelationshipSerializer(KaiModelSerializer):
    source_id = serializers.UUIDField()
    target_id = serializers.UUIDField()
    properties = JSONObjectField(required=False, max_bytes=32768)

    class Meta:
        model = Relationship
        fields = ["id", "source_id", "target_id", "type", "properties", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]
        extra_kwargs = {"type": {"required": True}}


class NeighbourEntitySerializer(EntitySerializer):
    depth = serializers.IntegerField(read_only=True)

    class Meta(EntitySerializer.Meta):
        fields = [*EntitySerializer.Meta.fields, "depth"]


class NeighbourhoodSerializer(serializers.Serializer):
    entity_id = serializers.UUIDField()
    depth = serializers.IntegerField()
    entities = NeighbourEntitySerializer(many=True)
    relationships = RelationshipSerializer(many=True)


class ExtractionStartSerializer(KaiSerializer):
    document_id = serializers.UUIDField(help_text="A READY document of the organization.")
    agent_id = serializers.UUIDField(help_text="The agent that reads it (its model answers).")


class ExtractionApplySerializer(KaiSerializer):
    """A reviewer's (edited) proposal; without a body the run's own proposal is applied."""

    entities = serializers.ListField(
        child=JSONObjectField(), required=False, max_length=200, help_text="[{key, type, label, properties}]"
    )
    relationships = serializers.ListField(
        child=JSONObjectField(),
        required=False,
        max_length=400,
        help_text="[{source, target, type, properties}] (entity keys)",
    )


class ExtractionSerializer(serializers.Serializer):
    execution_id = serializers.UUIDField()
    status = serializers.CharField()
    document_id = serializers.UUIDField()
    review = serializers.BooleanField(help_text="The proposal waits for apply (the organization's setting).")
    proposal = JSONObjectField(allow_null=True, help_text="{entities, relationships} once the run completed.")
    applied = serializers.BooleanField()
    created = JSONObjectField(allow_null=True, help_text="{entities: [ids], relationships: [ids]} once applied.")
