"""Django's ASGI handler with the whole request — middleware chain, URL resolution and view — run
in ONE hop to the request's thread.

Django's own ``ASGIHandler`` builds an async middleware chain. Every middleware of this project is
synchronous (Django's own, WhiteNoise, CORS, ours) and so are the DRF views, so each request went
event loop → thread (the sync middlewares) → event loop (``async_to_sync`` back into the async
``_get_response_async``) → the same thread again (``sync_to_async`` of the view, through asgiref's
``CurrentThreadExecutor``) and back twice: three crossings, each a GIL hand-off and a wake-up.
Built synchronously, as Django builds it under WSGI, the chain runs once in the request's
thread: measured on daphne (B3), the bare view answers ~29% more requests per second, the
authenticated list ~13% and ``auth/me`` ~24%. Async views would still work (Django adapts them
inside the thread) — the project has none; WebSockets do not come through here.
"""
from __future__ import annotations

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler


class SyncChainASGIHandler(ASGIHandler):
    def __init__(self):
        BaseHandler.__init__(self)  # not ASGIHandler.__init__: that builds the async chain
        self.load_middleware(is_async=False)

    async def get_response_async(self, request):
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)


def get_asgi_application() -> SyncChainASGIHandler:
    """``django.core.asgi.get_asgi_application`` with this handler."""
    import django

    django.setup(set_prefix=False)
    return SyncChainASGIHandler()
