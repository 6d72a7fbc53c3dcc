"""B5: REST write → event on a subscribed hub socket, p50/p99 and lost, beside a bare ASGI
WebSocket echo (send → echo received) on the same daphne version, measured in the same run and
interleaved sample by sample.

One hub socket (``/api/v1/ws?token=<owner JWT>``) subscribes to ``config.system.updated``; each
sample is ``POST /api/v1/config/system {"settings": {"b5_<i>": i, "b5_<i-1>": null}}`` on the same
product daphne, timed from just before the request is written to the moment the socket reads the
event naming ``b5_<i>`` (the event is sent on commit, so the POST's own response is not waited
for). A sample with no event within 2 s counts as lost. The baseline is one text frame sent to
``bench.asgi_sockets`` ``/echo`` and read back. Target: p99 < 50 ms and 0 lost (the ratio of the
p99s is printed beside it).

``run(ctx)`` is the runner's entry (starts the two daphnes, calls itself in a child through
bench/child.py, returns the row); in the child, ``run`` gets a SimpleNamespace and measures.
"""

from __future__ import annotations

import asyncio
import json
import time

from bench import child
from bench import ws_common as wsc
from bench.common import Context, log
from bench.results import Row, verdict

MEASURES = "REST write → event on a subscribed socket, p50/p99"
TARGET = "p99 < 50 ms, 0 lost"
EVENT = "config.system.updated"
LOST_AFTER = 2.0


def servers(ctx: Context) -> dict:
    """The product and bare daphnes B5 and B6 share (B6 stops them)."""
    if "ws_servers" not in ctx.shared:
        product = wsc.start_daphne(ctx, "daphne-ws-product", wsc.PRODUCT_APP, wsc.product_env(5000))
        bare = wsc.start_daphne(ctx, "daphne-ws-bare", wsc.BARE_APP)
        ctx.shared["ws_servers"] = {"product": product, "bare": bare}
    return ctx.shared["ws_servers"]


def stop_servers(ctx: Context) -> None:
    for server in (ctx.shared.pop("ws_servers", None) or {}).values():
        ctx.children.stop(server.process)


def run(ctx):
    if not isinstance(ctx, Context):
        return asyncio.run(_measure(ctx))
    started = servers(ctx)
    samples = 50 if ctx.quick else 200
    log(f"B5: {samples} REST writes → hub socket, interleaved with {samples} bare echoes")
    data = child.call(
        ctx,
        "b5_socket_latency",
        {
            "product_port": started["product"].port,
            "bare_port": started["bare"].port,
            "samples": samples,
            "warmup": 10 if ctx.quick else 30,
            "token": ctx.bootstrap["access_token"],
        },
    )
    p50, p99, lost = data["product_p50_ms"], data["product_p99_ms"], data["lost"]
    e50, e99 = data["echo_p50_ms"], data["echo_p99_ms"]
    ratio = p99 / e99 if e99 else float("inf")
    return [
        Row(
            id="B5",
            measures=MEASURES,
            target=TARGET,
            figure=p99,
            figure_text=f"p50 {p50:.1f} / p99 {p99:.1f} ms, {lost} lost",
            baseline=e99,
            baseline_text=f"bare echo p50 {e50:.2f} / p99 {e99:.2f} ms",
            ratio=round(ratio, 2),
            ratio_text=f"{ratio:.1f}x (p99)",
            status=verdict(p99 < 50 and lost == 0),
            note=(
                f"{data['samples']} POST /api/v1/config/system → {EVENT} on 1 hub socket, 1 daphne; "
                f"POST alone p50 {data['post_p50_ms']:.1f} ms; {data['non_200']} non-200"
            ),
            details=data,
        )
    ], []


async def _measure(ns) -> dict:
    import http.client

    import orjson

    wsc.raise_nofile()
    hub = await wsc.open_hub(f"ws://127.0.0.1:{ns.product_port}{wsc.HUB_PATH}", ns.token, [EVENT])
    echo = await wsc.connect(f"ws://127.0.0.1:{ns.bare_port}/echo")
    pending: dict[str, asyncio.Future] = {}

    async def read_hub():
        async for raw in hub:
            at = time.perf_counter()
            message = orjson.loads(raw)
            if message.get("type") != EVENT:
                continue
            for key in (message.get("data") or {}).get("changed") or []:
                future = pending.pop(key, None)
                if future is not None and not future.done():
                    future.set_result(at)

    reader = asyncio.create_task(read_hub())
    conn = http.client.HTTPConnection("127.0.0.1", ns.product_port, timeout=10)
    headers = {"Authorization": f"Bearer {ns.token}", "Content-Type": "application/json"}

    def post(body: dict) -> tuple[int, float]:
        started = time.perf_counter()
        conn.request("POST", "/api/v1/config/system", body=json.dumps(body), headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - started

    loop = asyncio.get_running_loop()
    state = {"i": 0}

    async def write_sample() -> tuple[float | None, int, float]:
        i = state["i"] = state["i"] + 1
        key = f"b5_{i}"
        future = loop.create_future()
        pending[key] = future
        started = time.perf_counter()
        request = asyncio.create_task(asyncio.to_thread(post, {"settings": {key: i, f"b5_{i - 1}": None}}))
        try:
            arrived = await asyncio.wait_for(future, LOST_AFTER)
            latency = (arrived - started) * 1000
        except TimeoutError:
            pending.pop(key, None)
            latency = None
        status, post_seconds = await request
        return latency, status, post_seconds * 1000

    async def echo_sample() -> float:
        payload = orjson.dumps({"type": "bench", "t": time.time(), "pad": "x" * 200}).decode()
        started = time.perf_counter()
        await echo.send(payload)
        await echo.recv()
        return (time.perf_counter() - started) * 1000

    for _ in range(ns.warmup):
        await write_sample()
        await echo_sample()
    product, echoes, posts, lost, non_200 = [], [], [], 0, 0
    for index in range(ns.samples):
        order = (echo_sample, write_sample) if index % 2 else (write_sample, echo_sample)
        for sample in order:
            if sample is echo_sample:
                echoes.append(await echo_sample())
                continue
            latency, status, post_ms = await write_sample()
            posts.append(post_ms)
            non_200 += status != 200
            if latency is None:
                lost += 1
            else:
                product.append(latency)
        await asyncio.sleep(0.005)
    await asyncio.to_thread(post, {"settings": {f"b5_{state['i']}": None}})
    reader.cancel()
    conn.close()
    await wsc.close_many([hub, echo])
    result = {
        "samples": ns.samples,
        "lost": lost,
        "non_200": non_200,
        "product_p50_ms": round(wsc.percentile(product, 0.5), 2),
        "product_p99_ms": round(wsc.percentile(product, 0.99), 2),
        "product_max_ms": round(max(product), 2) if product else None,
        "post_p50_ms": round(wsc.percentile(posts, 0.5), 2),
        "post_p99_ms": round(wsc.percentile(posts, 0.99), 2),
        "echo_p50_ms": round(wsc.percentile(echoes, 0.5), 3),
        "echo_p99_ms": round(wsc.percentile(echoes, 0.99), 3),
    }
    print(f"B5 {result}")
    return result
