"""Writes of the webhooks app: subscriptions, and the deliveries that events produce.

Deliveries are recorded in the transaction that publishes their event (a publish listener), so a
committed event always has its deliveries and a rolled-back one never does; one delivery per
(webhook, event) is enforced by a unique constraint. They are sent by Celery tasks queued on commit.

Signing: each request carries ``X-Kai-Timestamp: <unix seconds>`` and
``X-Kai-Signature: sha256=<hex>``, the HMAC-SHA256 under the webhook's secret of
``<timestamp>.<raw body>``. Receivers recompute it, compare in constant time, and refuse old
timestamps (replay protection).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from datetime import timedelta
from functools import partial

import orjson
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from rest_framework import exceptions

from apps.agents import crypto
from apps.audit.services import audit_record, snapshot
from apps.events.services import listener_read, serialize_event
from apps.webhooks.models import TEST_EVENT, WEBHOOK_EVENTS, DeliveryStatus, Webhook, WebhookDelivery
from apps.webhooks.selectors import webhook_by_reference
from apps.webhooks.tasks import deliver_webhook
from kai_platform.llm.netguard import AllowList, BlockedAddress, check_url, guarded_http_client

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Kai-Signature"
TIMESTAMP_HEADER = "X-Kai-Timestamp"
EVENT_HEADER = "X-Kai-Event"
DELIVERY_HEADER = "X-Kai-Delivery"
WEBHOOK_FIELDS = ("name", "description", "url", "events", "is_active")


# --- signing -----------------------------------------------------------------------------------


def sign(*, secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, ``<timestamp>.<body>``)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(
    *, secret: str, timestamp: str, body: bytes, signature: str, tolerance_seconds: int = 300, now: float | None = None
) -> bool:
    """What a receiver does (the README shows the same in plain Python)."""
    try:
        age = abs((now if now is not None else time.time()) - int(timestamp))
    except (TypeError, ValueError):
        return False
    return age <= tolerance_seconds and hmac.compare_digest(
        sign(secret=secret, timestamp=timestamp, body=body), signature or ""
    )


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def webhook_secret(webhook: Webhook) -> str:
    return crypto.decrypt(webhook.secret_encrypted)


# --- targets -----------------------------------------------------------------------------------


def target_allowlist(*, organization) -> AllowList:
    """``KAI_WEBHOOK_ALLOWED_HOSTS`` + the network allow-list the http tool uses (settings and the org's)."""
    org_settings = getattr(organization, "settings", None) or {}
    return AllowList.from_entries(
        settings.KAI_WEBHOOK_ALLOWED_HOSTS, settings.KAI_NETWORK_ALLOWLIST, org_settings.get("network_allowlist") or []
    )


def check_target(*, organization, url: str) -> None:
    """400 unless ``url`` is http(s) to a public address (or an allow-listed one)."""
    try:
        check_url(url, target_allowlist(organization=organization))
    except BlockedAddress as exc:
        raise exceptions.ValidationError({"url": [f"Refused target: {exc}."]})


def _check_events(events) -> list[str]:
    events = list(dict.fromkeys(events or []))
    unknown = [e for e in events if e not in WEBHOOK_EVENTS]
    if unknown:
        raise exceptions.ValidationError(
            {"events": [f"Unknown event type {unknown[0]!r}; one of: {', '.join(WEBHOOK_EVENTS)}."]}
        )
    if not events:
        raise exceptions.ValidationError({"events": ["Subscribe to at least one event type."]})
    return events


# --- subscriptions -----------------------------------------------------------------------------


def _audit_fields(webhook: Webhook) -> dict:
    return snapshot(webhook, ["id", "name", "description", "url", "events", "is_active", "secret_key_id"])


def webhook_create(*, organization, actor, data: dict) -> tuple[Webhook, str]:
    """→ (webhook, the secret in clear — shown once)."""
    values = {key: data[key] for key in WEBHOOK_FIELDS if key in data}
    values["events"] = _check_events(values.get("events"))
    check_target(organization=organization, url=values.get("url", ""))
    secret = data.get("secret") or new_secret()
    token, key_id = crypto.encrypt(secret)
    with transaction.atomic():
        webhook = Webhook.objects.create(
            organization=organization,
            created_by=actor if getattr(actor, "is_authenticated", False) else None,
            secret_encrypted=token,
            secret_key_id=key_id,
            secret_hint=crypto.mask(secret),
            **values,
        )
        audit_record(
            organization=organization,
            actor=actor,
            action="webhook.create",
            instance=webhook,
            after=_audit_fields(webhook),
        )
    return webhook, secret


def webhook_update(*, webhook: Webhook, actor, data: dict) -> tuple[Webhook, str | None]:
    """→ (webhook, the new secret in clear if ``secret`` or ``rotate_secret`` asked for one)."""
    values = {key: data[key] for key in WEBHOOK_FIELDS if key in data}
    if "events" in values:
        values["events"] = _check_events(values["events"])
    if "url" in values:
        check_target(organization=webhook.organization, url=values["url"])
    secret = data.get("secret") or (new_secret() if data.get("rotate_secret") else None)
    with transaction.atomic():
        webhook = Webhook.objects.select_for_update().get(pk=webhook.pk)
        before = _audit_fields(webhook)
        for key, value in values.items():
            setattr(webhook, key, value)
        if secret:
            webhook.secret_encrypted, webhook.secret_key_id = crypto.encrypt(secret)
            webhook.secret_hint = crypto.mask(secret)
        webhook.save()
        audit_record(
            organization=webhook.organization,
            actor=actor,
            action="webhook.update",
            instance=webhook,
            before=before,
            after=_audit_fields(webhook),
        )
    return webhook, secret


def webhook_delete(*, webhook: Webhook, actor) -> None:
    with transaction.atomic():
        audit_record(
            organization=webhook.organization,
            actor=actor,
            action="webhook.delete",
            instance=webhook,
            before=_audit_fields(webhook),
        )
        webhook.delete()


# --- deliveries --------------------------------------------------------------------------------


def event_payload(event) -> dict:
    body = serialize_event(event)
    return {
        "event_id": body["seq"],
        "type": body["type"],
        "created_at": body["timestamp"],
        "organization_id": body["organization_id"],
        "agent_id": body["agent_id"],
        "execution_id": body["execution_id"],
        "data": body["data"],
    }


def _enqueue(delivery_id, countdown: float | None = None) -> None:
    options = {"countdown": countdown} if countdown else {}
    deliver_webhook.apply_async(args=[str(delivery_id)], **options)


def _subscribed(organization_id, event_type: str) -> list:
    """The active webhooks of the organization subscribed to ``event_type`` (a ``listener_read``)."""
    return listener_read(
        ("webhooks", organization_id, event_type),
        lambda: list(
            Webhook.objects.for_org(organization_id)
            .filter(is_active=True, events__contains=[event_type])
            .values_list("pk", flat=True)
        ),
    )


def webhooks_want(organization_id, types) -> bool:
    """The publish listener's ``wants``: whether a webhook of the organization is subscribed to an
    event of ``types`` — read once per organization and type inside ``listener_reads_shared``, the
    same read ``on_event_published`` then makes. A webhook saved between this read and the event's
    statement may miss that event (as one saved while the event's transaction was open always could)."""
    return any(_subscribed(organization_id, event_type) for event_type in types if event_type in WEBHOOK_EVENTS)


def on_event_published(event) -> None:
    """Publish listener: record one delivery per subscribed active webhook, sent once committed.
    Never raises into the publisher (its run must not fail because a webhook did).

    It runs inside the publisher's transaction, under the organization's event lock, for every
    run's end: the usual answer (no webhook wants it) is one read and no savepoint (one for all the
    runs a worker ends together: ``listener_read``). A plain read
    fails only with its connection, which fails the publisher's transaction anyway; the writes
    get a savepoint of their own."""
    if event.type not in WEBHOOK_EVENTS:
        return
    try:
        hooks = _subscribed(event.organization_id, event.type)
        if not hooks:
            return
        with transaction.atomic():
            payload = event_payload(event)
            deliveries = WebhookDelivery.objects.bulk_create(
                [
                    WebhookDelivery(
                        organization_id=event.organization_id,
                        webhook_id=pk,
                        event_id=event.pk,
                        event_type=event.type,
                        payload=payload,
                    )
                    for pk in hooks
                ],
                ignore_conflicts=True,
            )
            for delivery in deliveries:
                transaction.on_commit(partial(_enqueue, delivery.pk), robust=True)
    except Exception:
        logger.exception("could not record webhook deliveries of event %s", event.pk)


def webhook_send_test(*, webhook: Webhook, actor) -> WebhookDelivery:
    """A ``webhook.test`` delivery with a sample payload, sent now (even to an inactive webhook)."""
    now = timezone.now()
    payload = {
        "event_id": None,
        "type": TEST_EVENT,
        "created_at": now.isoformat().replace("+00:00", "Z"),
        "organization_id": str(webhook.organization_id),
        "agent_id": None,
        "execution_id": None,
        "data": {"webhook_id": str(webhook.pk), "message": "This is a test delivery from kAI."},
    }
    with transaction.atomic():
        delivery = WebhookDelivery.objects.create(
            organization_id=webhook.organization_id,
            webhook=webhook,
            event_type=TEST_EVENT,
            payload=payload,
            created_by=actor if getattr(actor, "is_authenticated", False) else None,
        )
        audit_record(
            organization=webhook.organization,
            actor=actor,
            action="webhook.test",
            instance=delivery,
            after={"webhook": str(webhook.pk)},
        )
        transaction.on_commit(partial(_enqueue, delivery.pk))
    return delivery


def delivery_replay(*, delivery: WebhookDelivery, actor) -> WebhookDelivery:
    """Send the same payload again as a new delivery (same ``event_id`` in the body, new delivery id)."""
    with transaction.atomic():
        replay = WebhookDelivery.objects.create(
            organization_id=delivery.organization_id,
            webhook_id=delivery.webhook_id,
            event_id=delivery.event_id,
            event_type=delivery.event_type,
            payload=delivery.payload,
            replay_of=delivery,
            created_by=actor if getattr(actor, "is_authenticated", False) else None,
        )
        audit_record(
            organization=delivery.organization,
            actor=actor,
            action="webhook.replay",
            instance=replay,
            after={"replay_of": str(delivery.pk), "webhook": str(delivery.webhook_id)},
        )
        transaction.on_commit(partial(_enqueue, replay.pk))
    return replay


def backoff_seconds(attempt: int) -> float:
    """The wait after failed attempt ``attempt`` (1-based): base × 2^(attempt-1), capped."""
    base = float(settings.KAI_WEBHOOK_BACKOFF_BASE_SECONDS)
    return min(float(settings.KAI_WEBHOOK_BACKOFF_MAX_SECONDS), base * (2 ** max(0, attempt - 1)))


#: a delivery claimed by a worker that died is claimable again after this long
STUCK_AFTER = timedelta(minutes=5)


def _claim(delivery_id) -> WebhookDelivery | None:
    now = timezone.now()
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("webhook", "organization")
            .filter(pk=delivery_id)
            .first()
        )
        if delivery is None:
            return None
        claimable = delivery.status in (DeliveryStatus.PENDING, DeliveryStatus.RETRYING) or (
            delivery.status == DeliveryStatus.DELIVERING and delivery.updated_at < now - STUCK_AFTER
        )
        if not claimable:
            return None
        delivery.status = DeliveryStatus.DELIVERING
        delivery.attempts += 1
        delivery.save(update_fields=["status", "attempts", "updated_at"])
    return delivery


def _signed_headers(delivery, body: bytes) -> dict:
    """The attempt's headers: the event, the delivery id, and the body's signature with a timestamp."""
    timestamp = str(int(time.time()))
    return {
        "Content-Type": "application/json",
        "User-Agent": "kAI-Webhooks/1.0",
        EVENT_HEADER: delivery.event_type,
        DELIVERY_HEADER: str(delivery.pk),
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(secret=webhook_secret(delivery.webhook), timestamp=timestamp, body=body),
    }


def _attempt_outcome(delivery, *, status_code, latency_ms, error: str, answer: str, retry: bool) -> None:
    """The attempt in the delivery's history and its next state: succeeded, retrying after the
    backoff (until ``KAI_WEBHOOK_RETRY_HOURS`` after the first attempt) or failed."""
    now = timezone.now()
    delivery.history = [
        *delivery.history,
        {
            "attempt": delivery.attempts,
            "at": now.isoformat(),
            "status_code": status_code,
            "latency_ms": latency_ms,
            "error": error,
        },
    ]
    delivery.response_status, delivery.latency_ms, delivery.error, delivery.response_body = (
        status_code,
        latency_ms,
        error,
        answer,
    )
    if not error:
        delivery.status, delivery.delivered_at, delivery.next_attempt_at = DeliveryStatus.SUCCEEDED, now, None
    else:
        wait = backoff_seconds(delivery.attempts)
        give_up_at = delivery.created_at + timedelta(hours=float(settings.KAI_WEBHOOK_RETRY_HOURS))
        if retry and now + timedelta(seconds=wait) <= give_up_at:
            delivery.status, delivery.next_attempt_at = DeliveryStatus.RETRYING, now + timedelta(seconds=wait)
        else:
            delivery.status, delivery.next_attempt_at = DeliveryStatus.FAILED, None


def delivery_attempt(*, delivery_id) -> str:
    """Send one attempt of a delivery (idempotent: only a pending/retrying delivery is sent) and
    record it; a failure is retried with backoff until ``KAI_WEBHOOK_RETRY_HOURS`` after the first."""
    # deferred: heavy — the HTTP client stack, loaded on first use to keep process start fast
    import httpx2

    delivery = _claim(delivery_id)
    if delivery is None:
        return "skipped"
    webhook = delivery.webhook
    body = orjson.dumps(delivery.payload)
    status_code, latency_ms, error, answer, retry = None, None, "", "", True
    try:
        if not webhook.is_active and delivery.event_type != TEST_EVENT and delivery.replay_of_id is None:
            raise BlockedAddress("the webhook is disabled")
        allowlist = target_allowlist(organization=delivery.organization)
        check_url(webhook.url, allowlist)
        headers = _signed_headers(delivery, body)
        started = time.monotonic()
        with guarded_http_client(
            allowlist, timeout=float(settings.KAI_WEBHOOK_TIMEOUT_SECONDS), follow_redirects=False
        ) as client:
            response = client.post(webhook.url, content=body, headers=headers)
        latency_ms = round((time.monotonic() - started) * 1000, 2)
        status_code, answer = response.status_code, response.text[:2048]
        if not 200 <= status_code < 300:
            error = f"the target answered {status_code}"
    except BlockedAddress as exc:
        error, retry = f"refused target: {exc}", False
    except crypto.SecretUnreadable as exc:
        error, retry = str(exc), False
    except httpx2.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    _attempt_outcome(delivery, status_code=status_code, latency_ms=latency_ms, error=error, answer=answer, retry=retry)
    with transaction.atomic():
        delivery.save(
            update_fields=[
                "status",
                "history",
                "response_status",
                "latency_ms",
                "error",
                "response_body",
                "delivered_at",
                "next_attempt_at",
                "updated_at",
            ]
        )
        if delivery.status == DeliveryStatus.RETRYING:
            transaction.on_commit(partial(_enqueue, delivery.pk, backoff_seconds(delivery.attempts)))
    return delivery.status


def deliveries_requeue_due(*, limit: int = 500) -> int:
    """Beat: retries whose queued message was lost (a broker restart, a killed worker) are sent again."""
    now = timezone.now()
    due = list(
        WebhookDelivery.objects.filter(
            status=DeliveryStatus.RETRYING, next_attempt_at__lte=now - timedelta(seconds=60)
        ).values_list("pk", flat=True)[:limit]
    )
    due += list(
        WebhookDelivery.objects.filter(
            status__in=[DeliveryStatus.PENDING, DeliveryStatus.DELIVERING], updated_at__lte=now - STUCK_AFTER
        ).values_list("pk", flat=True)[:limit]
    )
    for pk in due:
        _enqueue(pk)
    return len(due)


def webhooks_rotate_secrets(*, batch_size: int = 500) -> int:
    """Re-encrypt every webhook secret under the newest ``KAI_SECRET_KEYS`` key (after adding one)."""
    rotated = 0
    primary = crypto.primary_key_id()
    while True:
        with transaction.atomic():
            batch = list(
                Webhook.objects.select_for_update(skip_locked=True)
                .exclude(secret_key_id=primary)
                .order_by("pk")[:batch_size]
            )
            for webhook in batch:
                webhook.secret_encrypted, webhook.secret_key_id = crypto.rotate(webhook.secret_encrypted)
                webhook.save(update_fields=["secret_encrypted", "secret_key_id", "updated_at"])
        rotated += len(batch)
        if len(batch) < batch_size:
            return rotated


def webhook_deliver(
    *, organization, reference: str, event_type: str, data: dict, execution_id=None, agent_id=None
) -> WebhookDelivery | None:
    """Send ``data`` to one subscription named by id or name (a crew task's ``callback``), sent on
    commit like every delivery. None when the organization has no active webhook by that reference."""
    webhook = webhook_by_reference(organization=organization, reference=reference)
    if webhook is None:
        return None
    payload = {
        "event_id": None,
        "type": event_type,
        "created_at": timezone.now().isoformat().replace("+00:00", "Z"),
        "organization_id": str(webhook.organization_id),
        "agent_id": str(agent_id) if agent_id else None,
        "execution_id": str(execution_id) if execution_id else None,
        "data": data,
    }
    with transaction.atomic():
        delivery = WebhookDelivery.objects.create(
            organization_id=webhook.organization_id, webhook=webhook, event_type=event_type, payload=payload
        )
        transaction.on_commit(partial(_enqueue, delivery.pk))
    return delivery
