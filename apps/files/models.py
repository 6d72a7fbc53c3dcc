"""Uploaded files: bytes in the configured storage (django-storages), metadata here."""

from django.db import models

from kai_platform.tenancy.models import TenantModel


class StoredFile(TenantModel):
    name = models.CharField(max_length=255, help_text="Sanitized original file name.")
    storage_key = models.CharField(max_length=512, unique=True, editable=False)
    size = models.BigIntegerField()
    content_type = models.CharField(max_length=255, help_text="Sniffed from the bytes, not taken from the client.")
    declared_content_type = models.CharField(max_length=255, blank=True)
    sha256 = models.CharField(max_length=64, db_index=True)
    agent_id = models.UUIDField(null=True, blank=True, db_index=True)
    execution_id = models.UUIDField(null=True, blank=True, db_index=True)
    metadata = models.JSONField(default=dict, blank=True)

    class Meta(TenantModel.Meta):
        verbose_name = "file"
        indexes = [models.Index(fields=["organization", "-created_at"], name="file_org_recent")]

    def __str__(self) -> str:
        return self.name
