from rest_framework import serializers

from apps.files.models import StoredFile
from kai_platform.api.serializers import JSONObjectField, KaiModelSerializer, KaiSerializer


class StoredFileSerializer(KaiModelSerializer):
    uploaded_by = serializers.UUIDField(source="created_by_id", read_only=True)
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = StoredFile
        fields = [
            "id",
            "name",
            "size",
            "content_type",
            "declared_content_type",
            "sha256",
            "uploaded_by",
            "agent_id",
            "execution_id",
            "metadata",
            "created_at",
            "download_url",
        ]
        read_only_fields = fields

    def get_download_url(self, obj) -> str:
        return f"/api/v1/files/{obj.pk}/download"


class AgentUploadSerializer(KaiSerializer):
    file = serializers.ListField(
        child=serializers.FileField(allow_empty_file=True),
        min_length=1,
        max_length=20,
        help_text="One or more files (repeat the multipart field `file`).",
    )
    execution_id = serializers.UUIDField(required=False)
    metadata = JSONObjectField(required=False, max_bytes=8192)


class UploadSerializer(AgentUploadSerializer):
    agent_id = serializers.UUIDField(required=False)


class UploadResponseSerializer(serializers.Serializer):
    files = StoredFileSerializer(many=True)
    total_size = serializers.IntegerField()
