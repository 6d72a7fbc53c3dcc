"""The bare ASGI WebSocket baselines of B5–B7, served by the same daphne as the product
(``python -m daphne bench.asgi_sockets:application``). Bench only; the product never serves it.

- ``/echo``      raw ASGI: accept, send every text frame back unchanged (B5 baseline).
- ``/idle``      raw ASGI: accept, then wait for the disconnect (B7 baseline).
- ``/broadcast`` the smallest Channels consumer: joins the group ``bench.fanout`` on the same
                 channels-redis layer (the product's ``CHANNEL_LAYERS``) and forwards the text of
                 every group message; no authentication, no limits, no envelope (B6 baseline).
- ``/idle-channels`` that consumer without the group: an idle socket with a channel-layer
                 channel (B7's second, informative baseline).
- any HTTP request → 200 ``ok`` (readiness probe ``/health``).
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings_bench")

import django  # noqa: E402

django.setup()  # the channel layer reads CHANNEL_LAYERS from the product's settings

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402

GROUP = "bench.fanout"


class BroadcastConsumer(AsyncWebsocketConsumer):
    groups = [GROUP]  # Channels adds the channel to the group before connect()

    async def connect(self):
        await self.accept()

    async def bench_event(self, message):
        await self.send(text_data=message["text"])


class IdleChannelsConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        await self.accept()


_broadcast = BroadcastConsumer.as_asgi()
_idle_channels = IdleChannelsConsumer.as_asgi()


async def _echo(scope, receive, send):
    while True:
        event = await receive()
        if event["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif event["type"] == "websocket.receive":
            if event.get("text") is not None:
                await send({"type": "websocket.send", "text": event["text"]})
            else:
                await send({"type": "websocket.send", "bytes": event.get("bytes")})
        elif event["type"] == "websocket.disconnect":
            return


async def _idle(scope, receive, send):
    while True:
        event = await receive()
        if event["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif event["type"] == "websocket.disconnect":
            return


async def _http(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def application(scope, receive, send):
    if scope["type"] == "http":
        return await _http(scope, receive, send)
    if scope["type"] != "websocket":
        return None
    path = scope["path"].rstrip("/")
    if path == "/echo":
        return await _echo(scope, receive, send)
    if path == "/idle":
        return await _idle(scope, receive, send)
    if path == "/broadcast":
        return await _broadcast(scope, receive, send)
    if path == "/idle-channels":
        return await _idle_channels(scope, receive, send)
    await send({"type": "websocket.close", "code": 1008})
