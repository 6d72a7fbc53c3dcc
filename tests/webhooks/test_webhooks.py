"""Webhooks in-process: signing, secrets at rest, deliveries recorded with their event, backoff
and giving up, refused targets at send time. The worker round trip is in test_worker.py."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from apps.events.services import publish
from apps.webhooks import services
from apps.webhooks.models import Webhook, WebhookDelivery
from tests.helpers import assert_envelope
from tests.webhooks.test_worker import Receiver, verify

pytestmark = pytest.mark.django_db


def _hook(member, url, events=("execution.failed",)):
    webhook, secret = services.webhook_create(
        organization=member.organization, actor=member.user, data={"url": url, "events": list(events)}
    )
    return webhook, secret


def test_signature_round_trip_and_tolerance():
    body = b'{"a":1}'
    signature = services.sign(secret="s3cret-value-123", timestamp="1700000000", body=body)
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    assert services.verify(
        secret="s3cret-value-123", timestamp="1700000000", body=body, signature=signature, now=1700000100
    )
    assert not services.verify(
        secret="s3cret-value-123", timestamp="1700000000", body=body + b" ", signature=signature, now=1700000100
    )
    assert not services.verify(
        secret="s3cret-value-123", timestamp="1700000000", body=body, signature=signature, now=1700001000
    )  # too old: a replayed request


def test_backoff_doubles_from_the_configured_base_and_is_capped(settings):
    settings.KAI_WEBHOOK_BACKOFF_BASE_SECONDS = 30
    settings.KAI_WEBHOOK_BACKOFF_MAX_SECONDS = 3600
    assert [services.backoff_seconds(n) for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert services.backoff_seconds(20) == 3600


def test_secret_is_encrypted_at_rest_and_deliveries_follow_their_events_transaction(member, settings):
    settings.KAI_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    webhook, secret = _hook(member, "http://127.0.0.1:9/x", events=("execution.failed", "agent.status_changed"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret_encrypted FROM webhooks_webhook WHERE id = %s", [webhook.pk])
        stored = cursor.fetchone()[0]
    assert secret not in stored and services.webhook_secret(Webhook.objects.get(pk=webhook.pk)) == secret
    publish(member.organization, "execution.completed", {"x": 1})  # not subscribed
    event = publish(member.organization, "execution.failed", {"x": 2})
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            publish(member.organization, "agent.status_changed", {"x": 3})
            raise RuntimeError("rolled back")
    deliveries = list(WebhookDelivery.objects.filter(webhook=webhook))
    assert [(d.event_id, d.event_type) for d in deliveries] == [(event.pk, "execution.failed")]
    assert deliveries[0].payload["data"] == {"x": 2} and deliveries[0].payload["event_id"] == event.pk


def test_an_event_no_webhook_wants_costs_one_read_inside_the_publishers_lock(member, settings):
    """The listener runs under the organization's event lock for every run's end: no savepoint
    round trips unless it writes deliveries."""
    from django.test.utils import CaptureQueriesContext

    from apps.events.models import Event

    settings.KAI_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    webhook, _ = _hook(member, "http://127.0.0.1:9/x", events=("execution.failed",))
    event = Event.objects.create(organization=member.organization, type="execution.completed", data={})
    with transaction.atomic():
        with CaptureQueriesContext(connection) as queries:
            services.on_event_published(event)
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["SELECT"]
    assert not WebhookDelivery.objects.filter(webhook=webhook).exists()
    # a subscribed event still records its delivery inside a savepoint of its own
    event = Event.objects.create(organization=member.organization, type="execution.failed", data={})
    with transaction.atomic():
        with CaptureQueriesContext(connection) as queries:
            services.on_event_published(event)
    assert [q["sql"].split()[0] for q in queries.captured_queries][:2] == ["SELECT", "SAVEPOINT"]
    assert WebhookDelivery.objects.get(webhook=webhook).event_id == event.pk


def test_failed_attempts_retry_then_give_up_and_refused_targets_do_not_retry(member, settings):
    settings.KAI_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    receiver = Receiver(fail_first={"webhook.test"})
    try:
        webhook, secret = _hook(member, receiver.url)
        delivery = services.webhook_send_test(webhook=webhook, actor=member.user)
        assert services.delivery_attempt(delivery_id=delivery.pk) == "retrying"
        assert services.delivery_attempt(delivery_id=delivery.pk) == "succeeded"
        assert services.delivery_attempt(delivery_id=delivery.pk) == "skipped"  # idempotent
        assert verify(secret, receiver.requests[-1])["type"] == "webhook.test"
        delivery.refresh_from_db()
        assert [h["status_code"] for h in delivery.history] == [500, 204]

        settings.KAI_WEBHOOK_RETRY_HOURS = 0  # the retry window is over: the next failure is final
        receiver.fail_first = {"webhook.test"}
        again = services.webhook_send_test(webhook=webhook, actor=member.user)
        assert services.delivery_attempt(delivery_id=again.pk) == "failed"

        settings.KAI_WEBHOOK_RETRY_HOURS = 24
        settings.KAI_WEBHOOK_ALLOWED_HOSTS = []  # the allow-list changed after the webhook was made
        blocked = services.webhook_send_test(webhook=webhook, actor=member.user)
        assert services.delivery_attempt(delivery_id=blocked.pk) == "failed"
        blocked.refresh_from_db()
        assert "refused target" in blocked.error and blocked.attempts == 1
        assert len(receiver.requests) == 3
    finally:
        receiver.close()


def test_rotating_the_secret_returns_it_once(member, client_for, settings):
    settings.KAI_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    webhook, secret = _hook(member, "http://127.0.0.1:9/x")
    response = client_for(member).patch(f"/api/v1/webhooks/{webhook.pk}", {"rotate_secret": True}, format="json")
    assert response.status_code == 200
    new = response.json()["secret"]
    assert new != secret and services.webhook_secret(Webhook.objects.get(pk=webhook.pk)) == new
    assert (
        "secret" not in client_for(member).patch(f"/api/v1/webhooks/{webhook.pk}", {"name": "n"}, format="json").json()
    )


def test_private_targets_are_refused_unless_allow_listed(member, client_for, settings, make_member):
    client = client_for(member)
    body = {"url": "http://127.0.0.1:9/hook", "events": ["execution.failed"]}
    settings.KAI_WEBHOOK_ALLOWED_HOSTS = []
    refused = client.post("/api/v1/webhooks", body, format="json")
    assert_envelope(refused, 400)
    assert refused.json()["errors"][0]["field"] == "url"
    assert_envelope(client.post("/api/v1/webhooks", {**body, "url": "http://10.1.2.3/x"}, format="json"), 400)
    assert_envelope(client.post("/api/v1/webhooks", {**body, "events": ["nope"]}, format="json"), 400)
    settings.KAI_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    assert client.post("/api/v1/webhooks", body, format="json").status_code == 201
    developer = make_member("developer", organization=member.organization)
    assert_envelope(client_for(developer).post("/api/v1/webhooks", body, format="json"), 403)


def test_secrets_rotate_under_a_new_key(member, settings):
    from cryptography.fernet import Fernet
    from django.core.management import call_command

    from apps.agents import crypto

    settings.KAI_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    old_key = Fernet.generate_key().decode()
    settings.KAI_SECRET_KEYS = [old_key]
    crypto.reset_keys_cache()
    try:
        webhook, secret = _hook(member, "http://127.0.0.1:9/x")
        settings.KAI_SECRET_KEYS = [Fernet.generate_key().decode(), old_key]
        crypto.reset_keys_cache()
        call_command("rotate_webhook_secrets", stdout=open("/dev/null", "w"))
        webhook.refresh_from_db()
        assert webhook.secret_key_id == crypto.primary_key_id()
        settings.KAI_SECRET_KEYS = settings.KAI_SECRET_KEYS[:1]  # the old key retired
        crypto.reset_keys_cache()
        assert services.webhook_secret(webhook) == secret
    finally:
        settings.KAI_SECRET_KEYS = []
        crypto.reset_keys_cache()


def test_a_target_is_http_or_https_in_the_document_and_on_the_wire(member, client_for, settings):
    import re

    from kai_platform.api.url_pattern import HTTP_URL_PATTERN

    settings.KAI_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1", "example.com"]
    client = client_for(member)
    body = {"url": "ftps://example.com/hook", "events": ["execution.failed"]}
    refused = client.post("/api/v1/webhooks", body, format="json")
    assert_envelope(refused, 400)
    assert refused.json()["errors"][0]["field"] == "url"
    webhook, _secret = _hook(member, "http://127.0.0.1:9/x")
    assert_envelope(client.put(f"/api/v1/webhooks/{webhook.pk}", body, format="json"), 400)
    assert Webhook.objects.get(pk=webhook.pk).url == "http://127.0.0.1:9/x"

    document = client.get("/api-openapi.json").json()
    url = document["components"]["schemas"]["Webhook"]["properties"]["url"]
    assert url["pattern"] == HTTP_URL_PATTERN
    assert "format" not in url
    assert re.match(url["pattern"], "https://example.com/hook") and not re.match(url["pattern"], body["url"])
