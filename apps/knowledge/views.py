"""Thin views over the knowledge services and selectors."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, status
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.knowledge import embedders, extraction, graph, search, selectors, services
from apps.knowledge.models import Document, Entity, KnowledgeBase, Relationship
from apps.knowledge.serializers import (
    DocumentCreateJSONSerializer,
    DocumentCreateSerializer,
    DocumentSerializer,
    EntitySerializer,
    ExtractionApplySerializer,
    ExtractionSerializer,
    ExtractionStartSerializer,
    KnowledgeBaseSerializer,
    NeighbourhoodSerializer,
    RelationshipSerializer,
    SearchResultSerializer,
    SearchSerializer,
)
from apps.runs.registry import service
from kai_platform.api.parsers import KaiJSONParser
from kai_platform.tenancy.permissions import IsOrganizationMember
from kai_platform.tenancy.roles import Role
from kai_platform.tenancy.viewsets import OrganizationContextMixin, TenantScopedViewSet

#: ``user`` reads and searches; developers and up write
WRITERS = frozenset({Role.OWNER, Role.ADMIN, Role.DEVELOPER})
WRITES = ("create", "update", "partial_update", "destroy", "reingest")


@extend_schema(tags=["knowledge"])
class KnowledgeBaseViewSet(TenantScopedViewSet):
    """Knowledge bases: documents cut into chunks with full-text and vector indexes;
    ``{id}/search`` finds chunks (hybrid, vector or text)."""

    model = KnowledgeBase
    serializer_class = KnowledgeBaseSerializer
    action_roles = {name: WRITERS for name in WRITES}

    def scope_queryset(self, queryset):
        return selectors.knowledge_bases_with_counts(queryset=queryset)

    def _body(self, kb) -> dict:
        return KnowledgeBaseSerializer(self.get_queryset().get(pk=kb.pk)).data

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        kb = services.knowledge_base_create(
            organization=self.organization, actor=request.user, data=dict(serializer.validated_data)
        )
        return Response(self._body(kb), status=status.HTTP_201_CREATED)

    def update(self, request, *args, **kwargs):
        kb = self.get_object()
        serializer = self.get_serializer(kb, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        kb = services.knowledge_base_update(knowledge_base=kb, actor=request.user, data=dict(serializer.validated_data))
        return Response(self._body(kb))

    def perform_destroy(self, instance):
        services.knowledge_base_delete(knowledge_base=instance, actor=self.request.user)

    @extend_schema(request=SearchSerializer, responses={200: SearchResultSerializer})
    @action(detail=True, methods=["post"])
    def search(self, request, pk=None):
        """The chunks that best answer ``query`` (``top_k`` ≤ 50; ``mode`` hybrid | vector | text;
        ``filters``: ``document_id`` (one or a list) and ``metadata`` (contained in the document's or
        chunk's metadata))."""
        kb = self.get_object()
        serializer = SearchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        values = serializer.validated_data
        filters = values.get("filters") or {}
        try:
            hits = search.search(
                knowledge_bases=[kb],
                query=values["query"],
                top_k=values["top_k"],
                mode=values["mode"],
                document_ids=filters.get("document_id"),
                metadata=filters.get("metadata"),
            )
        except embedders.EmbeddingUnavailable as exc:
            raise exceptions.ValidationError({"query": [str(exc)]})
        return Response({"items": [h.as_dict() for h in hits]})


@extend_schema(tags=["knowledge"])
class DocumentViewSet(TenantScopedViewSet):
    """A knowledge base's documents: POST multipart ``file``, or JSON ``{text, name}`` or ``{url}``;
    ingestion runs on a worker (``status`` PENDING → PROCESSING → READY | FAILED with ``error``)."""

    model = Document
    serializer_class = DocumentSerializer
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    parser_classes = [KaiJSONParser, MultiPartParser, FormParser]
    action_roles = {name: WRITERS for name in WRITES}
    filterset_fields = ["status", "source_type"]

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)  # authentication and roles first
        if getattr(self, "swagger_fake_view", False):
            return
        self.knowledge_base = selectors.knowledge_base_of(
            organization=self.organization, pk=kwargs.get("knowledge_base_id")
        )
        if self.knowledge_base is None:
            raise exceptions.NotFound("No such knowledge base.")

    def scope_queryset(self, queryset):
        return queryset.filter(knowledge_base_id=self.kwargs.get("knowledge_base_id"))

    def get_parsers(self):
        """A PATCH is JSON only (the document lists that encoding alone): its ``metadata`` is an object, which an
        ``x-www-form-urlencoded`` body cannot carry; multipart is for a new document's ``file`` (``create``)."""
        request = getattr(self, "request", None)
        if request is not None and request.method in ("PATCH", "PUT"):
            return [KaiJSONParser()]
        return super().get_parsers()

    @extend_schema(
        request={"multipart/form-data": DocumentCreateSerializer, "application/json": DocumentCreateJSONSerializer},
        responses={202: DocumentSerializer},
    )
    def create(self, request, *args, **kwargs):
        serializer = DocumentCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        values = serializer.validated_data
        common = {"knowledge_base": self.knowledge_base, "actor": request.user, "metadata": values.get("metadata")}
        if values.get("file"):
            document = services.document_create_file(upload=values["file"], name=values.get("name", ""), **common)
        elif values.get("text"):
            document = services.document_create_text(text=values["text"], name=values["name"], **common)
        else:
            document = services.document_create_url(url=values["url"], name=values.get("name", ""), **common)
        return Response(DocumentSerializer(document).data, status=status.HTTP_202_ACCEPTED)

    def update(self, request, *args, **kwargs):
        document = self.get_object()
        serializer = self.get_serializer(document, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        document = services.document_update(document=document, actor=request.user, data=dict(serializer.validated_data))
        return Response(DocumentSerializer(document).data)

    def perform_destroy(self, instance):
        services.document_delete(document=instance, actor=self.request.user)

    @extend_schema(request=None, responses={202: DocumentSerializer})
    @action(detail=True, methods=["post"])
    def reingest(self, request, *args, **kwargs):
        """Extract, chunk and embed the document again (a URL is fetched again)."""
        document = services.document_reingest(document=self.get_object(), actor=request.user)
        return Response(DocumentSerializer(document).data, status=status.HTTP_202_ACCEPTED)


class GraphRowViewSet(TenantScopedViewSet):
    """The writes of a graph row kind (``kind``), through ``graph.row_*``: audited, seed 004 events."""

    kind: graph.Kind
    action_roles = {name: WRITERS for name in WRITES}

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        row = graph.row_create(
            self.kind, organization=self.organization, actor=request.user, data=dict(serializer.validated_data)
        )
        return Response(self.get_serializer(row).data, status=status.HTTP_201_CREATED)

    def update(self, request, *args, **kwargs):
        serializer = self.get_serializer(self.get_object(), data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        row = graph.row_update(
            self.kind, row=self.get_object(), actor=request.user, data=dict(serializer.validated_data)
        )
        return Response(self.get_serializer(row).data)

    def perform_destroy(self, instance):
        graph.row_delete(self.kind, row=instance, actor=self.request.user)


@extend_schema(tags=["knowledge"])
class EntityViewSet(GraphRowViewSet):
    """Knowledge-graph entities (``type``, ``label``, ``properties``)."""

    model = Entity
    kind = graph.ENTITY
    serializer_class = EntitySerializer
    filterset_fields = ["type"]


@extend_schema(tags=["knowledge"])
class RelationshipViewSet(GraphRowViewSet):
    """Knowledge-graph relationships: a typed edge ``source_id`` → ``target_id`` with ``properties``."""

    model = Relationship
    kind = graph.RELATIONSHIP
    serializer_class = RelationshipSerializer
    filterset_fields = ["type", "source_id", "target_id"]


@extend_schema(
    tags=["knowledge"],
    parameters=[
        OpenApiParameter("entity_id", OpenApiTypes.UUID, required=True),
        OpenApiParameter(
            "depth", {"type": "integer", "minimum": 1, "maximum": graph.MAX_DEPTH}, description="default 1"
        ),
    ],
)
class NeighbourhoodView(OrganizationContextMixin, APIView):
    """The entities within ``depth`` hops of ``entity_id`` (either direction) and the
    relationships among them; each entity carries its ``depth``."""

    permission_classes = [IsOrganizationMember]

    @extend_schema(responses={200: NeighbourhoodSerializer})
    def get(self, request):
        try:
            depth = int(request.query_params.get("depth", "1"))  # given empty: not an integer
        except ValueError:
            depth = -1
        if not 1 <= depth <= graph.MAX_DEPTH:
            raise exceptions.ValidationError({"depth": [f"An integer from 1 to {graph.MAX_DEPTH}."]})
        entity_id = request.query_params.get("entity_id") or ""
        entity = selectors.entity_of(organization=self.organization, pk=entity_id)
        if entity is None:
            raise exceptions.NotFound("No such entity.")
        found = graph.neighbourhood(organization=self.organization, entity=entity, depth=depth)
        entities = [{**EntitySerializer(e).data, "depth": found["depths"][str(e.pk)]} for e in found["entities"]]
        entities.sort(key=lambda e: (e["depth"], e["label"]))
        return Response(
            {
                "entity_id": str(entity.pk),
                "depth": depth,
                "entities": entities,
                "relationships": RelationshipSerializer(found["relationships"], many=True).data,
            }
        )


def _extraction_body(run) -> dict:
    mark = run.definition[extraction.MARK]
    proposal = None
    if run.status == "COMPLETED":
        result = run.result
        try:
            proposal = extraction.proposal_parse(result.get("output") if isinstance(result, dict) else result)
        except exceptions.ValidationError:
            proposal = None
    return {
        "execution_id": str(run.pk),
        "status": run.status,
        "document_id": mark["document_id"],
        "review": bool(mark.get("review")),
        "proposal": proposal,
        "applied": bool(mark.get("applied")),
        "created": mark.get("created"),
    }


@extend_schema(tags=["knowledge"])
class ExtractionView(OrganizationContextMixin, APIView):
    """Extract entities and relationships from a document with an agent: a run on a worker (202);
    its proposal is written when it completes, or on ``{execution_id}/apply`` when the organization
    reviews extractions (setting ``knowledge_extraction_review``)."""

    permission_classes = [IsOrganizationMember]
    action_roles = {"post": WRITERS}
    parser_classes = [KaiJSONParser]

    @extend_schema(request=ExtractionStartSerializer, responses={202: ExtractionSerializer})
    def post(self, request):
        serializer = ExtractionStartSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        values = serializer.validated_data
        document = Document.objects.for_org(self.organization).filter(pk=values["document_id"]).first()
        agent = service("agents_load")(self.organization, [values["agent_id"]]).get(str(values["agent_id"]))
        if document is None or agent is None:
            raise exceptions.NotFound("No such document." if document is None else "No such agent.")
        run = extraction.extraction_start(
            organization=self.organization, actor=request.user, document=document, agent=agent
        )
        return Response(_extraction_body(run), status=status.HTTP_202_ACCEPTED)


@extend_schema(tags=["knowledge"])
class ExtractionDetailView(OrganizationContextMixin, APIView):
    """An extraction run: its status and, once it completed, its proposal."""

    permission_classes = [IsOrganizationMember]

    @extend_schema(responses={200: ExtractionSerializer})
    def get(self, request, execution_id):
        return Response(
            _extraction_body(extraction.extraction_of(organization=self.organization, execution_id=execution_id))
        )


@extend_schema(tags=["knowledge"])
class ExtractionApplyView(OrganizationContextMixin, APIView):
    """Write a completed extraction's proposal — the run's own, or the reviewer's edited one — once."""

    permission_classes = [IsOrganizationMember]
    action_roles = {"post": WRITERS}
    parser_classes = [KaiJSONParser]

    @extend_schema(request=ExtractionApplySerializer, responses={200: ExtractionSerializer})
    def post(self, request, execution_id):
        serializer = ExtractionApplySerializer(data=request.data or {})
        serializer.is_valid(raise_exception=True)
        run = extraction.extraction_of(organization=self.organization, execution_id=execution_id)
        extraction.extraction_apply_run(run=run, actor=request.user, proposal=dict(serializer.validated_data) or None)
        run.refresh_from_db()
        return Response(_extraction_body(run))
