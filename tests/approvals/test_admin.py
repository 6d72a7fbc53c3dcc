"""The operator console's approvals and webhook deliveries: pending filter, approve/reject and
replay actions through the services (audit rows included)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from apps.approvals import services
from apps.approvals.models import Approval
from apps.audit.models import AuditEvent
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def test_pending_filter_and_console_answers(staff_client, member, monkeypatch):
    handled = []
    # a stand-in for the workflows app's handler, put back after the test
    monkeypatch.setitem(services._HANDLERS, "workflow_step", lambda a: handled.append(a.status))
    first = services.approval_request(organization=member.organization, question="Deploy A?", step_id="a")
    second = services.approval_request(organization=member.organization, question="Deploy B?", step_id="b")
    url = reverse("admin:approvals_approval_changelist")
    assert staff_client.get(url, {"pending": "yes"}).context["cl"].result_count == 2
    response = staff_client.post(url, {"action": "approve", "_selected_action": [str(first.pk)]}, follow=True)
    assert response.status_code == 200
    response = staff_client.post(url, {"action": "reject", "_selected_action": [str(second.pk)]}, follow=True)
    assert response.status_code == 200
    assert handled == ["approved", "rejected"]
    assert staff_client.get(url, {"pending": "yes"}).context["cl"].result_count == 0
    assert staff_client.get(url, {"pending": "no"}).context["cl"].result_count == 2
    first.refresh_from_db()
    assert first.resolved_by is not None and first.resolved_by.is_staff
    assert AuditEvent.objects.filter(action="approval.approve", object_id=str(first.pk)).exists()
    assert staff_client.get(reverse("admin:approvals_approval_change", args=[first.pk])).status_code == 200


def test_replay_a_delivery_from_the_console(staff_client, member, settings):
    from apps.webhooks import services as webhooks
    from apps.webhooks.models import WebhookDelivery

    settings.KAI_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    webhook, _ = webhooks.webhook_create(
        organization=member.organization,
        actor=member.user,
        data={"url": "http://127.0.0.1:9/x", "events": ["execution.failed"]},
    )
    delivery = webhooks.webhook_send_test(webhook=webhook, actor=member.user)
    url = reverse("admin:webhooks_webhookdelivery_changelist")
    response = staff_client.post(url, {"action": "replay", "_selected_action": [str(delivery.pk)]}, follow=True)
    assert response.status_code == 200
    replay = WebhookDelivery.objects.get(replay_of=delivery)
    assert replay.payload == delivery.payload and replay.status == "pending"
    change = staff_client.get(reverse("admin:webhooks_webhook_change", args=[webhook.pk]))
    assert change.status_code == 200 and webhook.secret_encrypted not in change.content.decode()
    assert Approval.objects.count() == 0


def test_the_dashboard_lists_pending_approvals(member, make_member):
    from apps.console.selectors import dashboard

    services.approval_request(organization=member.organization, question="Ship it?", timeout_seconds=600)
    other = make_member()
    services.approval_request(organization=other.organization, question="Elsewhere?")
    mine = dashboard(organization=member.organization)["approvals"]
    assert mine["count"] == 1 and mine["latest"][0]["question"] == "Ship it?" and mine["latest"][0]["deadline"]
    assert dashboard()["approvals"]["count"] == 2  # staff: every organization
