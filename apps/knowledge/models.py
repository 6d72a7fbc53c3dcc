"""Knowledge bases: documents (uploaded, fetched or given as text) cut into chunks, each with a
full-text vector and an embedding (pgvector), searched by text, by vector or both; and the
organization's knowledge graph (entities and the relationships between them)."""

from __future__ import annotations

from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.db import models
from pgvector.django import HnswIndex, VectorField

from kai_platform.tenancy.models import TenantModel

#: every embedding is stored with this many dimensions (the builtin embedder's; provider models
#: are asked for it with the ``dimensions`` parameter — see docs/knowledge.md)
EMBEDDING_DIMENSIONS = 384
#: PostgreSQL text search configurations a knowledge base may use
LANGUAGES = ("english", "simple", "german", "french", "spanish", "italian", "portuguese", "dutch", "russian")


class KnowledgeBase(TenantModel):
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    embedding_model = models.CharField(
        max_length=200,
        blank=True,
        default="builtin",
        help_text="'builtin' (offline feature hashing) or a model name of the organization's providers/models "
        "served by an OpenAI-compatible /embeddings endpoint.",
    )
    chunk_size = models.PositiveIntegerField(default=300, help_text="Tokens per chunk.")
    chunk_overlap = models.PositiveIntegerField(default=40, help_text="Tokens shared by consecutive chunks.")
    language = models.CharField(
        max_length=20,
        default="english",
        choices=[(x, x) for x in LANGUAGES],
        help_text="PostgreSQL text search configuration of the full-text index.",
    )
    metadata = models.JSONField(default=dict, blank=True)

    class Meta(TenantModel.Meta):
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="uniq_knowledge_base_name")]

    def __str__(self) -> str:
        return self.name


class DocumentStatus(models.TextChoices):
    PENDING = "PENDING", "Pending"
    PROCESSING = "PROCESSING", "Processing"
    READY = "READY", "Ready"
    FAILED = "FAILED", "Failed"


class SourceType(models.TextChoices):
    FILE = "file", "Uploaded file"
    URL = "url", "Fetched URL"
    TEXT = "text", "Text"


class Document(TenantModel):
    knowledge_base = models.ForeignKey(KnowledgeBase, on_delete=models.CASCADE, related_name="documents")
    name = models.CharField(max_length=255)
    source_type = models.CharField(max_length=8, choices=SourceType.choices, editable=False)
    source_url = models.URLField(max_length=2000, blank=True, editable=False)
    file = models.ForeignKey(
        "files.StoredFile",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
        help_text="The uploaded file (or the fetched page) the text comes from.",
    )
    text = models.TextField(blank=True, editable=False, help_text="The given text (source_type text).")
    content_type = models.CharField(max_length=255, blank=True, editable=False)
    bytes = models.BigIntegerField(default=0, editable=False)
    sha256 = models.CharField(max_length=64, blank=True, editable=False)
    metadata = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=12, choices=DocumentStatus.choices, default=DocumentStatus.PENDING, editable=False
    )
    error = models.TextField(blank=True, editable=False)
    chunk_count = models.PositiveIntegerField(default=0, editable=False)
    token_count = models.PositiveIntegerField(default=0, editable=False)
    page_count = models.PositiveIntegerField(default=0, editable=False)
    version = models.PositiveIntegerField(
        default=1,
        editable=False,
        help_text="Bumped by every (re-)ingest request; a task for an older version does nothing.",
    )
    ingested_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta(TenantModel.Meta):
        indexes = [
            models.Index(fields=["knowledge_base", "-created_at"], name="kdoc_kb_created"),
            models.Index(fields=["organization", "status"], name="kdoc_org_status"),
        ]

    def __str__(self) -> str:
        return self.name


class Chunk(TenantModel):
    knowledge_base = models.ForeignKey(KnowledgeBase, on_delete=models.CASCADE, related_name="+")
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    position = models.PositiveIntegerField()
    text = models.TextField()
    token_count = models.PositiveIntegerField(default=0)
    metadata = models.JSONField(default=dict, blank=True)
    search_vector = SearchVectorField(null=True)
    embedding = VectorField(dimensions=EMBEDDING_DIMENSIONS, null=True)

    class Meta(TenantModel.Meta):
        ordering = ("document_id", "position")
        constraints = [models.UniqueConstraint(fields=["document", "position"], name="uniq_chunk_position")]
        indexes = [
            models.Index(fields=["knowledge_base", "document"], name="kchunk_kb_doc"),
            GinIndex(fields=["search_vector"], name="kchunk_search_vector"),
            HnswIndex(
                name="kchunk_embedding_hnsw",
                fields=["embedding"],
                m=16,
                ef_construction=64,
                opclasses=["vector_cosine_ops"],
            ),
        ]

    def __str__(self) -> str:
        return f"{self.document_id}#{self.position}"


class Entity(TenantModel):
    """A node of the organization's knowledge graph."""

    type = models.CharField(max_length=100)
    label = models.CharField(max_length=500)
    properties = models.JSONField(default=dict, blank=True)
    document = models.ForeignKey(
        Document,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The document it was found in, if any.",
    )

    class Meta(TenantModel.Meta):
        verbose_name_plural = "entities"
        indexes = [models.Index(fields=["organization", "type"], name="kentity_org_type")]

    def __str__(self) -> str:
        return f"{self.type}: {self.label}"


class Relationship(TenantModel):
    """A directed, typed edge between two entities of one organization."""

    source = models.ForeignKey(Entity, on_delete=models.CASCADE, related_name="outgoing")
    target = models.ForeignKey(Entity, on_delete=models.CASCADE, related_name="incoming")
    type = models.CharField(max_length=100)
    properties = models.JSONField(default=dict, blank=True)

    class Meta(TenantModel.Meta):
        indexes = [
            models.Index(fields=["source", "type"], name="krel_source_type"),
            models.Index(fields=["target", "type"], name="krel_target_type"),
        ]

    def __str__(self) -> str:
        return f"{self.source_id} -{self.type}-> {self.target_id}"
