"""The ASGI handler (kai_platform/api/asgi_handler.py): the middleware chain and the view run in
the request's one thread, and requests through the real ASGI application answer as before."""

from __future__ import annotations

import json
import threading

import pytest
from channels.testing import HttpCommunicator
from django.http import JsonResponse, StreamingHttpResponse
from django.urls import path

from kai_platform.api.asgi_handler import SyncChainASGIHandler

SEEN: list[tuple[str, int]] = []


class RecordThread:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        SEEN.append(("middleware", threading.get_ident()))
        response = self.get_response(request)
        SEEN.append(("middleware-out", threading.get_ident()))
        return response


def view(request):
    SEEN.append(("view", threading.get_ident()))
    return JsonResponse({"ok": True})


def stream(request):
    return StreamingHttpResponse((f"chunk {i}\n".encode() for i in range(3)), content_type="text/plain")


urlpatterns = [path("probe", view), path("stream", stream)]
HOST = [(b"host", b"testserver")]


@pytest.mark.asyncio
async def test_middleware_and_view_run_in_one_thread_off_the_event_loop(settings, monkeypatch):
    from asgiref.sync import AsyncToSync

    settings.ROOT_URLCONF = __name__
    settings.MIDDLEWARE = [f"{__name__}.RecordThread"]
    SEEN.clear()
    back_to_the_loop = []
    original = AsyncToSync.__call__
    monkeypatch.setattr(
        AsyncToSync, "__call__", lambda self, *a, **k: back_to_the_loop.append(self) or original(self, *a, **k)
    )
    handler = SyncChainASGIHandler()
    response = await HttpCommunicator(handler, "GET", "/probe", headers=HOST).get_response(timeout=10)
    assert response["status"] == 200 and json.loads(response["body"]) == {"ok": True}
    assert back_to_the_loop == []  # Django's own handler goes back to the loop between middleware and view
    assert [where for where, _ in SEEN] == ["middleware", "view", "middleware-out"]
    threads = {ident for _, ident in SEEN}
    assert len(threads) == 1 and threads != {threading.get_ident()}  # one thread, not the loop's

    status, body = await _streamed(handler, "/stream")
    assert status == 200 and body == b"chunk 0\nchunk 1\nchunk 2\n"


async def _streamed(app, path_: str) -> tuple[int, bytes]:
    from asgiref.testing import ApplicationCommunicator

    communicator = ApplicationCommunicator(
        app,
        {"type": "http", "http_version": "1.1", "method": "GET", "path": path_, "query_string": b"", "headers": HOST},
    )
    await communicator.send_input({"type": "http.request", "body": b""})
    start = await communicator.receive_output(10)
    body = b""
    while True:
        message = await communicator.receive_output(10)
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await communicator.wait(10)
    return start["status"], body


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_the_application_answers_through_it():
    from kai_platform.asgi import application, django_asgi_app

    assert isinstance(django_asgi_app, SyncChainASGIHandler)
    response = await HttpCommunicator(application, "GET", "/health", headers=HOST).get_response(timeout=10)
    assert response["status"] == 200 and json.loads(response["body"]) == {"status": "ok"}
    login = json.dumps({"email": "nobody@example.com", "password": "x" * 12}).encode()
    response = await HttpCommunicator(
        application,
        "POST",
        "/api/v1/auth/login",
        body=login,
        headers=[*HOST, (b"content-type", b"application/json"), (b"content-length", str(len(login)).encode())],
    ).get_response(timeout=10)
    body = json.loads(response["body"])
    assert response["status"] == 401 and body["code"].startswith("AUTH_") and body["request_id"], body
    response = await HttpCommunicator(application, "GET", "/api/v1/no-such-route", headers=HOST).get_response(
        timeout=10
    )
    assert response["status"] == 404 and json.loads(response["body"])["request_id"]
