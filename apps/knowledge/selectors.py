"""Reads of the knowledge app."""

from __future__ import annotations

import uuid

from django.db.models import Count, Sum
from django.db.models.functions import Coalesce

from apps.knowledge.models import Document, Entity, KnowledgeBase


def knowledge_bases_with_counts(*, queryset):
    return queryset.annotate(
        document_count=Count("documents"),
        chunk_count=Coalesce(Sum("documents__chunk_count"), 0),
        total_bytes=Coalesce(Sum("documents__bytes"), 0),
    )


def knowledge_base_of(*, organization, pk) -> KnowledgeBase | None:
    try:
        uuid.UUID(str(pk))
    except ValueError:
        return None
    return KnowledgeBase.objects.for_org(organization).filter(pk=pk).select_related("organization").first()


def knowledge_bases_by_ids(*, organization, ids) -> list[KnowledgeBase]:
    valid = []
    for value in ids or []:
        try:
            valid.append(uuid.UUID(str(value)))
        except ValueError:
            continue
    return list(KnowledgeBase.objects.for_org(organization).filter(pk__in=valid).select_related("organization"))


def documents_of(*, knowledge_base):
    return Document.objects.for_org(knowledge_base.organization_id).filter(knowledge_base=knowledge_base)


def entity_of(*, organization, pk):
    try:
        uuid.UUID(str(pk))
    except ValueError:
        return None
    return Entity.objects.for_org(organization).filter(pk=pk).first()
