"""Django's ASGI handler with the whole request — middleware chain, URL resolution and view — run
in ONE hop to the request's thread.

Every middleware of this project and every DRF view is synchronous, so the chain is built
synchronously, as Django builds it under WSGI, and runs once in the request's thread instead of
crossing between the event loop and that thread three times (why and what it gained:
docs/benchmarks.md). Async views would still work (Django adapts them inside the thread) — the
project has none; WebSockets do not come through here.
"""

from __future__ import annotations

import django
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler
from django.http import HttpRequest, HttpResponseBase


class SyncChainASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        BaseHandler.__init__(self)  # not ASGIHandler.__init__: that builds the async chain
        self.load_middleware(is_async=False)

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)


def get_asgi_application() -> SyncChainASGIHandler:
    """``django.core.asgi.get_asgi_application`` with this handler."""
    django.setup(set_prefix=False)
    return SyncChainASGIHandler()
