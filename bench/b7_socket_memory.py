"""B7: memory per idle authenticated hub socket, beside a bare ASGI socket, same daphne version,
same run.

Two fresh daphnes, each started with ``ulimit -n`` raised to the hard limit: the product
(``/api/v1/ws``, per-IP cap raised for the bench) and ``bench.asgi_sockets`` (``/idle``: a raw ASGI
app that accepts and waits), plus a third, informative column on a third fresh daphne:
``/idle-channels``, the smallest Channels ``AsyncWebsocketConsumer`` (no auth, a channel-layer
channel on the product's channels-redis layer, no group) — what Channels' own machinery costs per
socket before the product adds anything. For each: RSS of the daphne process (``/proc/<pid>/status`` VmRSS)
after a warm-up of 50 sockets opened and closed, then after K idle sockets are open (hub sockets
authenticated with ``?token=`` JWTs, K/5 bench admins since the product allows 5 per user, each
waited for until ``connection_established``; not subscribed); (after − before) / K. The client is a
separate asyncio process with its descriptor limit raised. Target: product ≤ 1.5 × bare.
"""

from __future__ import annotations

import asyncio
import math
import time

from bench import child
from bench import ws_common as wsc
from bench.b5_socket_latency import stop_servers
from bench.common import Context, log
from bench.results import Row, verdict

MEASURES = "memory per idle authenticated socket"
TARGET = "≤ 1.5x"
WARMUP = 50


def run(ctx):
    if not isinstance(ctx, Context):
        return asyncio.run(_measure(ctx))
    sockets = 2000 if ctx.quick else 10_000
    stop_servers(ctx)  # B5/B6's daphnes, if still up
    product = wsc.start_daphne(ctx, "daphne-b7-product", wsc.PRODUCT_APP, wsc.product_env(sockets))
    bare = wsc.start_daphne(ctx, "daphne-b7-bare", wsc.BARE_APP)
    channels = wsc.start_daphne(ctx, "daphne-b7-channels", wsc.BARE_APP)
    try:
        log(f"B7: RSS of daphne before/after {sockets} idle sockets, hub vs bare ASGI")
        data = child.call(
            ctx,
            "b7_socket_memory",
            {
                "product_port": product.port,
                "product_pid": product.pid,
                "bare_port": bare.port,
                "bare_pid": bare.pid,
                "channels_port": channels.port,
                "channels_pid": channels.pid,
                "sockets": sockets,
                "organization_id": ctx.bootstrap["organization_id"],
                "owner_id": ctx.bootstrap["user_id"],
            },
        )
    finally:
        ctx.children.stop(product.process)
        ctx.children.stop(bare.process)
        ctx.children.stop(channels.process)
    per_product, per_bare = data["product_kib_per_socket"], data["bare_kib_per_socket"]
    ratio = per_product / per_bare if per_bare > 0 else float("inf")
    k = data["sockets"]
    return [
        Row(
            id="B7",
            measures=f"{MEASURES} ({k:,} sockets)",
            target=TARGET,
            figure=per_product,
            figure_text=f"{per_product:.1f} KiB/socket",
            baseline=per_bare,
            baseline_text=f"{per_bare:.1f} KiB/socket bare ASGI",
            ratio=round(ratio, 2),
            ratio_text=f"{ratio:.2f}x",
            status=verdict(ratio <= 1.5),
            note=(
                f"daphne RSS +{data['product_delta_mib']:.0f} MiB (from {data['product_before_mib']:.0f}) for {k:,} hub "
                f"sockets vs +{data['bare_delta_mib']:.0f} MiB (from {data['bare_before_mib']:.0f}) bare; "
                f"bare Channels consumer {data['channels_kib_per_socket']:.1f} KiB/socket "
                f"({data['channels_kib_per_socket'] / per_bare:.2f}x bare ASGI); "
                f"connect {data['product_connect_s']:.0f} s vs {data['bare_connect_s']:.0f} s"
                + (f"; only {k:,} of {data['wanted']:,} sockets: {data['limit_reason']}" if k < data["wanted"] else "")
            ),
            details=data,
        )
    ], []


async def _measure(ns) -> dict:
    nofile = wsc.raise_nofile()
    wanted = ns.sockets
    sockets = min(wanted, nofile - 200)
    reason = f"client descriptor limit {nofile}" if sockets < wanted else ""
    users = math.ceil(sockets / 5)
    tokens = await asyncio.to_thread(wsc.make_socket_users, ns.organization_id, ns.owner_id, users, "b7")
    hub_url = f"ws://127.0.0.1:{ns.product_port}{wsc.HUB_PATH}"
    bare_url = f"ws://127.0.0.1:{ns.bare_port}/idle"
    channels_url = f"ws://127.0.0.1:{ns.channels_port}/idle-channels"
    fleets = {
        "bare": (ns.bare_pid, lambda i: wsc.connect(bare_url)),
        "channels": (ns.channels_pid, lambda i: wsc.connect(channels_url)),
        "product": (ns.product_pid, lambda i: wsc.open_hub(hub_url, tokens[i // 5])),
    }
    result = {"wanted": wanted, "sockets": sockets, "users": users, "limit_reason": reason}
    for name, (pid, factory) in fleets.items():
        await wsc.close_many(await wsc.open_many(factory, WARMUP))
        await asyncio.sleep(1.0)
        before = await asyncio.to_thread(wsc.settled_rss, pid)
        started = time.perf_counter()
        opened = await wsc.open_many(factory, sockets)
        result[f"{name}_connect_s"] = round(time.perf_counter() - started, 1)
        after = await asyncio.to_thread(wsc.settled_rss, pid, 4.0)
        await wsc.close_many(opened)
        result.update(
            {
                f"{name}_before_mib": round(before / 2**20, 1),
                f"{name}_after_mib": round(after / 2**20, 1),
                f"{name}_delta_mib": round((after - before) / 2**20, 1),
                f"{name}_kib_per_socket": round((after - before) / sockets / 1024, 2),
            }
        )
        print(f"B7 {name}: {result}", flush=True)
    return result
