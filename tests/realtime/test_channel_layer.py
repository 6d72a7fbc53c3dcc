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

pytestmark = pytest.mark.asyncio


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
