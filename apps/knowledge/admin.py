"""Operator console for knowledge: bases with their counts and a search box on a base's page,
documents with status and counts, re-ingest and delete through the services; the graph."""

from django.contrib import admin, messages
from django.db.models import Count, Sum
from django.db.models.functions import Coalesce
from django.template.defaultfilters import filesizeformat

from apps.knowledge import embedders, graph, search, services
from apps.knowledge.models import Document, Entity, KnowledgeBase, Relationship
from kai_platform.admin import CREATED


class DocumentInline(admin.TabularInline):
    model = Document
    fields = ("name", "source_type", "status", "chunk_count", "bytes", "error", "ingested_at")
    readonly_fields = fields
    extra = 0
    max_num = 0
    show_change_link = True
    can_delete = False


@admin.register(KnowledgeBase)
class KnowledgeBaseAdmin(admin.ModelAdmin):
    list_display = ("name", "organization", "embedding_model", "documents", "chunks", "size", "created_at")
    list_filter = ("organization", "embedding_model", CREATED)
    search_fields = ("=id", "name", "organization__slug")
    list_select_related = ("organization",)
    readonly_fields = ("organization", "created_by", "created_at", "updated_at")
    inlines = [DocumentInline]
    actions = ["reingest_all"]
    change_form_template = "admin/knowledge/knowledgebase/change_form.html"

    def has_add_permission(self, request):
        return False  # created through the API (validated embedding model)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                document_total=Count("documents"),
                chunk_total=Coalesce(Sum("documents__chunk_count"), 0),
                byte_total=Coalesce(Sum("documents__bytes"), 0),
            )
        )

    @admin.display(description="documents", ordering="document_total")
    def documents(self, obj):
        return obj.document_total

    @admin.display(description="chunks", ordering="chunk_total")
    def chunks(self, obj):
        return obj.chunk_total

    @admin.display(description="size", ordering="byte_total")
    def size(self, obj):
        return filesizeformat(obj.byte_total)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """``?kq=`` searches the base (hybrid) and lists the hits under the form."""
        extra_context = dict(extra_context or {})
        query = (request.GET.get("kq") or "").strip()
        kb = KnowledgeBase.objects.filter(pk=object_id).select_related("organization").first() if query else None
        if kb is not None:
            try:
                extra_context["search_hits"] = search.search(knowledge_bases=[kb], query=query[:4000], top_k=10)
            except embedders.EmbeddingUnavailable as exc:
                self.message_user(request, str(exc), messages.ERROR)
        extra_context["search_query"] = query
        return super().change_view(request, object_id, form_url, extra_context)

    def delete_model(self, request, obj):
        services.knowledge_base_delete(knowledge_base=obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for kb in queryset:
            services.knowledge_base_delete(knowledge_base=kb, actor=request.user)

    @admin.action(description="Re-ingest every document of the selected bases")
    def reingest_all(self, request, queryset):
        count = 0
        for document in Document.objects.filter(knowledge_base__in=queryset):
            services.document_reingest(document=document, actor=request.user)
            count += 1
        self.message_user(request, f"Queued {count} document(s) for ingestion.", messages.SUCCESS)


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "knowledge_base",
        "organization",
        "source_type",
        "status",
        "chunk_count",
        "human_size",
        "ingested_at",
    )
    list_filter = ("status", "source_type", "organization", CREATED)
    search_fields = ("=id", "name", "source_url", "error", "knowledge_base__name")
    list_select_related = ("knowledge_base", "organization")
    readonly_fields = (
        "organization",
        "knowledge_base",
        "source_type",
        "source_url",
        "file",
        "content_type",
        "bytes",
        "sha256",
        "status",
        "error",
        "chunk_count",
        "token_count",
        "page_count",
        "version",
        "ingested_at",
        "created_by",
        "created_at",
        "updated_at",
    )
    exclude = ("text",)
    actions = ["reingest"]

    def has_add_permission(self, request):
        return False

    @admin.display(description="size", ordering="bytes")
    def human_size(self, obj):
        return filesizeformat(obj.bytes)

    @admin.action(description="Re-ingest the selected documents")
    def reingest(self, request, queryset):
        for document in queryset:
            services.document_reingest(document=document, actor=request.user)
        self.message_user(request, f"Queued {queryset.count()} document(s) for ingestion.", messages.SUCCESS)

    def delete_model(self, request, obj):
        services.document_delete(document=obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for document in queryset.select_related("file"):
            services.document_delete(document=document, actor=request.user)


class GraphRowAdmin(admin.ModelAdmin):
    """Deletes through ``graph.row_delete`` (audit rows, seed 004 events, an entity's edges)."""

    kind: graph.Kind

    def delete_model(self, request, obj):
        graph.row_delete(self.kind, row=obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for row in queryset:
            graph.row_delete(self.kind, row=row, actor=request.user)


@admin.register(Entity)
class EntityAdmin(GraphRowAdmin):
    list_display = ("label", "type", "organization", "created_at")
    list_filter = ("type", "organization")
    search_fields = ("=id", "label", "type")
    list_select_related = ("organization",)
    readonly_fields = ("organization", "document", "created_by", "created_at", "updated_at")

    def has_add_permission(self, request):
        return False

    kind = graph.ENTITY


@admin.register(Relationship)
class RelationshipAdmin(GraphRowAdmin):
    list_display = ("type", "source", "target", "organization", "created_at")
    list_filter = ("type", "organization")
    search_fields = ("=id", "type", "source__label", "target__label")
    list_select_related = ("organization", "source", "target")
    readonly_fields = ("organization", "source", "target", "created_by", "created_at", "updated_at")

    def has_add_permission(self, request):
        return False

    kind = graph.RELATIONSHIP
