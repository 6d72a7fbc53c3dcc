"""The channel layer as configured (settings.CHANNEL_LAYERS) stops when its consumer is cancelled.

A socket's consumer cancels its pending channel-layer ``receive`` on disconnect. With a Redis
socket timeout set, redis-py sends each command through ``asyncio.wait_for``, which on Python
3.11 swallows a cancellation that races the send: the receive then loops on BZPOPMIN forever (a
leaked Redis poller per disconnected socket in production, a hung event loop in tests).
"""

from __future__ import annotations

import asyncio
import random

import pytest
from channels.layers import get_channel_layer


@pytest.mark.asyncio
async def test_a_cancelled_receive_always_ends():
    layer = get_channel_layer()
    rng = random.Random(7)
    for attempt in range(300):
        channel = await layer.new_channel()
        receive = asyncio.ensure_future(layer.receive(channel))
        await asyncio.sleep(rng.random() * 0.01)  # cancel at every point of the command's life
        receive.cancel()
        done, _ = await asyncio.wait([receive], timeout=2)
        assert done, f"receive #{attempt} ignored its cancellation: {receive!r}"
        assert receive.cancelled()


@pytest.mark.asyncio
async def test_the_layer_and_relays_work_over_the_embedded_redis_unix_socket(tmp_path):
    """``make run`` without REDIS_URL serves Redis on a unix socket: the asyncio clients' options
    must suit it (TCP keepalive is refused there -- every socket once failed with a 500/1011)."""
    import redis.asyncio as aioredis
    from channels_redis.core import RedisChannelLayer

    from kai_platform.embedded import EmbeddedRedis
    from kai_platform.env import async_redis_options

    server = EmbeddedRedis(directory=tmp_path / "redis")
    try:
        assert server.url.startswith("unix://")
        options = async_redis_options(server.url)
        layer = RedisChannelLayer(hosts=[{"address": server.url, **options}], prefix="kai-unix-test")
        channel = await layer.new_channel()
        await layer.group_add("watchers", channel)
        await layer.group_send("watchers", {"type": "hello", "n": 1})
        assert await asyncio.wait_for(layer.receive(channel), 5) == {"type": "hello", "n": 1}
        await layer.flush()
        await layer.close_pools()

        client = aioredis.Redis.from_url(server.url, **options)
        try:
            assert await client.xadd("kai-unix-test:stream", {"chunk": "a"})
            entries = await client.xread({"kai-unix-test:stream": "0-0"}, count=10, block=100)
            assert entries[0][1][0][1] == {b"chunk": b"a"}
        finally:
            await client.aclose()
    finally:
        server.stop()


def test_tcp_clients_keep_tcp_keepalive_and_no_socket_timeout():
    from kai_platform.env import async_redis_options

    assert async_redis_options("redis://127.0.0.1:6379/3") == {
        "socket_timeout": None,
        "health_check_interval": 30,
        "socket_keepalive": True,
    }
    assert "socket_keepalive" not in async_redis_options("unix:///tmp/x.sock?db=0")
