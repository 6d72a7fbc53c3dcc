"""The console's knowledge pages: counts, the search box on a base's page, re-ingest and delete
through the services (audit rows, chunks gone)."""

import pytest
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.knowledge import services
from apps.knowledge.ingest import document_ingest
from apps.knowledge.models import Chunk, Document
from tests.console.conftest import fast_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    client.force_login(fast_user(is_staff=True, is_superuser=True))
    return client


def _base_with_document(member):
    kb = services.knowledge_base_create(organization=member.organization, actor=member.user, data={"name": "Ops"})
    doc = services.document_create_text(
        knowledge_base=kb,
        actor=member.user,
        name="runbook.txt",
        text="Restart the gateway with the blue switch. Never unplug the red one.",
    )
    document_ingest(document_id=doc.pk, version=doc.version)
    return kb, Document.objects.get(pk=doc.pk)


def test_a_base_page_shows_counts_and_searches(staff_client, member):
    kb, doc = _base_with_document(member)
    listing = staff_client.get(reverse("admin:knowledge_knowledgebase_changelist")).content.decode()
    assert "Ops" in listing and f">{doc.chunk_count}<" in listing
    page = staff_client.get(reverse("admin:knowledge_knowledgebase_change", args=[kb.pk]), {"kq": "blue switch"})
    html = page.content.decode()
    assert page.status_code == 200 and 'id="knowledge-search-hits"' in html
    assert "Restart the gateway" in html and "runbook.txt" in html and "Ready" in html
    empty = staff_client.get(
        reverse("admin:knowledge_knowledgebase_change", args=[kb.pk]), {"kq": "?!"}
    )  # no words: nothing to match
    assert "No chunk matches" in empty.content.decode()


def test_reingest_and_delete_actions_go_through_the_services(staff_client, member):
    kb, doc = _base_with_document(member)
    url = reverse("admin:knowledge_document_changelist")
    staff_client.post(url, {"action": "reingest", "_selected_action": [str(doc.pk)]})
    doc.refresh_from_db()
    assert doc.status == "PENDING" and doc.version == 2
    assert AuditEvent.objects.filter(action="document.reingest", object_id=str(doc.pk)).exists()
    staff_client.post(url, {"action": "delete_selected", "_selected_action": [str(doc.pk)], "post": "yes"})
    assert not Document.objects.filter(pk=doc.pk).exists() and not Chunk.objects.filter(document_id=doc.pk).exists()
    assert AuditEvent.objects.filter(action="document.delete", object_id=str(doc.pk)).exists()
