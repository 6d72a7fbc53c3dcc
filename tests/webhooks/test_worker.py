"""Outbound webhooks through a REAL Celery worker and a real HTTP receiver on 127.0.0.1 (allow-listed
for this test only): one signed delivery per event, a retry after a 500, test and replay."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from apps.webhooks.models import WebhookDelivery
from tests.approvals.test_worker import AGENTS_YAML, tasks_yaml
from tests.crews.conftest import wait_for
from tests.helpers import WorkerProcess, subprocess_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PLAIN_TASKS = "only_task:\n  description: Say hello\n  expected_output: A greeting\n  agent: writer\n"


class Receiver:
    """A tiny webhook endpoint: records every request; answers 500 to the first request of each
    event type listed in ``fail_first``."""

    def __init__(self, fail_first=()):
        self.requests: list[dict] = []
        self.fail_first = set(fail_first)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                event = self.headers.get("X-Kai-Event")
                failing = event in receiver.fail_first
                receiver.fail_first.discard(event)
                receiver.requests.append(
                    {"headers": dict(self.headers), "body": body, "answered": 500 if failing else 204}
                )
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/kai"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def of(self, event_type):
        return [r for r in self.requests if r["headers"].get("X-Kai-Event") == event_type]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def verify(secret: str, request: dict) -> dict:
    """What the README tells receivers to do."""
    timestamp = request["headers"]["X-Kai-Timestamp"]
    expected = (
        "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + request["body"], hashlib.sha256).hexdigest()
    )
    assert hmac.compare_digest(expected, request["headers"]["X-Kai-Signature"])
    assert abs(time.time() - int(timestamp)) < 300
    return json.loads(request["body"])


@pytest.fixture
def webhook_worker(transactional_db):
    worker = WorkerProcess(
        env=subprocess_env(KAI_WEBHOOK_ALLOWED_HOSTS="127.0.0.1", KAI_WEBHOOK_BACKOFF_BASE_SECONDS="0.5")
    )
    try:
        worker.wait_alive()
        yield worker
    finally:
        worker.stop()


def test_signed_deliveries_one_per_event_retried_after_a_500_test_and_replay(
    webhook_worker, member, client_for, settings
):
    settings.KAI_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    receiver = Receiver(fail_first={"execution.completed"})
    try:
        client = client_for(member)
        created = client.post(
            "/api/v1/webhooks",
            {"name": "ops", "url": receiver.url, "events": ["execution.completed", "approval.requested"]},
            format="json",
        )
        assert created.status_code == 201, created.content
        hook = created.json()
        secret = hook["secret"]
        assert secret.startswith("whsec_") and hook["secret_hint"] and secret not in hook["secret_hint"]
        assert "secret" not in client.get(f"/api/v1/webhooks/{hook['id']}").json()

        plain = client.post(
            "/api/v1/executions", {"agents_yaml": AGENTS_YAML, "tasks_yaml": PLAIN_TASKS}, format="json"
        ).json()["execution_id"]
        gated = client.post(
            "/api/v1/executions",
            {"agents_yaml": AGENTS_YAML, "tasks_yaml": tasks_yaml("{}"), "inputs": {"topic": "x"}},
            format="json",
        ).json()["execution_id"]

        # execution.completed: answered 500 first, then delivered again by the retry
        completed = wait_for(
            lambda: len(receiver.of("execution.completed")) >= 2 and receiver.of("execution.completed"),
            30,
            message="the retried delivery",
        )
        first, retried = completed
        assert (first["answered"], retried["answered"]) == (500, 204)
        body = verify(secret, retried)
        assert verify(secret, first) == body
        assert body["type"] == "execution.completed" and body["execution_id"] == plain
        assert body["data"]["status"] == "COMPLETED"
        assert first["headers"]["X-Kai-Delivery"] == retried["headers"]["X-Kai-Delivery"]

        # approval.requested of the parked run: exactly one delivery, signed
        requested = wait_for(lambda: receiver.of("approval.requested"), 30, message="approval.requested")
        assert verify(secret, requested[0])["execution_id"] == gated

        delivery = wait_for(
            lambda: WebhookDelivery.objects.filter(event_type="execution.completed", status="succeeded").first(),
            10,
            message="the delivery to be recorded",
        )
        assert delivery.attempts == 2 and delivery.response_status == 204 and delivery.latency_ms is not None
        assert [h["status_code"] for h in delivery.history] == [500, 204]
        listed = client.get(f"/api/v1/webhooks/{hook['id']}/deliveries").json()
        assert {item["event_type"] for item in listed["items"]} == {"execution.completed", "approval.requested"}

        # test and replay
        test = client.post(f"/api/v1/webhooks/{hook['id']}/test", {}, format="json")
        assert test.status_code == 202
        wait_for(lambda: receiver.of("webhook.test"), 15, message="the test delivery")
        assert verify(secret, receiver.of("webhook.test")[0])["data"]["webhook_id"] == hook["id"]
        replay = client.post(f"/api/v1/webhook-deliveries/{delivery.pk}/replay", {}, format="json")
        assert replay.status_code == 202 and replay.json()["replay_of_id"] == str(delivery.pk)
        wait_for(lambda: len(receiver.of("execution.completed")) == 3, 15, message="the replay")
        replayed = receiver.of("execution.completed")[2]
        assert verify(secret, replayed) == body and replayed["headers"]["X-Kai-Delivery"] == replay.json()["id"]

        # nothing else: one delivery per event, no unsubscribed event types
        time.sleep(1.0)
        events = sorted(r["headers"]["X-Kai-Event"] for r in receiver.requests)
        assert events == [
            "approval.requested",
            "execution.completed",
            "execution.completed",
            "execution.completed",
            "webhook.test",
        ]
    finally:
        receiver.close()
