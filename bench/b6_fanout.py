"""B6: one event fanned out to 1,000 subscribed hub sockets, beside a bare Channels broadcast to
1,000 sockets through the same channels-redis layer, same daphne version, same run, rounds
interleaved.

Product: 1,000 hub sockets (``?token=`` JWTs of 200 bench admins: the product allows 5 sockets
per user; the bench server's ``KAI_WS_MAX_PER_IP`` is raised since every client is 127.0.0.1),
each subscribed to ``config.system.updated``. A round calls ``events.services.publish`` (row,
advisory lock, commit, ``group_send`` to ``org.<id>``) and stops the clock when the last of the
1,000 sockets has read the event. Baseline: 1,000 sockets on ``bench.asgi_sockets`` ``/broadcast``
(a Channels consumer in group ``bench.fanout``, no auth, no envelope); a round is one
``group_send`` of a pre-serialized message of the same size, sent the same way (``async_to_sync``
in a thread, as a sync request would). Figure and baseline are the medians over the rounds of
publish → last socket; target ratio ≤ 2×. All sockets live in one asyncio client process, apart
from the server; both fleets stay connected for the whole measurement.

After a delivered event each hub socket reads the event table once (its reconcile pass, 1 s later):
rounds are spaced so that pass is over before the next one.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time

from bench import child
from bench import ws_common as wsc
from bench.b5_socket_latency import servers, stop_servers
from bench.common import Context, log
from bench.results import Row, verdict

MEASURES = "one event fanned out to 1,000 sockets"
TARGET = "≤ 2x"
EVENT = "config.system.updated"
SOCKETS = 1000
LOST_AFTER = 8.0  # seconds a live socket may take before its event counts as lost


def run(ctx):
    if not isinstance(ctx, Context):
        return asyncio.run(_measure(ctx))
    try:
        started = servers(ctx)
        rounds = 3 if ctx.quick else 5
        log(f"B6: {SOCKETS} hub sockets vs {SOCKETS} bare Channels sockets, {rounds} interleaved rounds")
        data = child.call(
            ctx,
            "b6_fanout",
            {
                "product_port": started["product"].port,
                "bare_port": started["bare"].port,
                "sockets": SOCKETS,
                "rounds": rounds,
                "organization_id": ctx.bootstrap["organization_id"],
                "owner_id": ctx.bootstrap["user_id"],
            },
        )
    finally:
        stop_servers(ctx)
    product, bare = data["product_ms"], data["bare_ms"]
    ratio = product / bare if bare else float("inf")
    lost = data["product_lost"] + data["product_closed"]
    return [
        Row(
            id="B6",
            measures=MEASURES,
            target=TARGET,
            figure=product,
            figure_text=f"{product:.0f} ms to all {SOCKETS} (median of {data['rounds']})",
            baseline=bare,
            baseline_text=f"{bare:.0f} ms bare Channels group_send",
            ratio=round(ratio, 2),
            ratio_text=f"{ratio:.2f}x",
            status=verdict(ratio <= 2.0 and lost == 0),
            note=(
                f"publish → last of {SOCKETS} hub sockets (per-socket p50 {data['product_socket_p50_ms']:.0f} ms) vs "
                f"group_send → last bare socket (p50 {data['bare_socket_p50_ms']:.0f} ms); rounds product "
                f"{data['product_rounds_ms']} / bare {data['bare_rounds_ms']} ms; lost {data['product_lost']}/"
                f"{data['bare_lost']} (live sockets that missed a round's event); closed by the server during the run "
                f"{data['product_closed']}/{data['bare_closed']} {data['closed_reasons']}; "
                f"{data['users']} users x 5 sockets; connect {data['product_connect_s']:.1f} s "
                f"vs {data['bare_connect_s']:.1f} s"
            ),
            details=data,
        )
    ], []


class Fleet:
    """Sockets read by one task each; a round's arrivals are the times its marker was read. A
    socket the server closes is counted in ``closed`` and no longer awaited."""

    def __init__(self, sockets: list):
        self.sockets = sockets
        self.marker = "\x00"
        self.arrivals: list[float] = []
        self.closed: list[str] = []
        self.done = asyncio.Event()
        self.tasks = [asyncio.create_task(self._read(ws)) for ws in sockets]

    @property
    def live(self) -> int:
        return len(self.sockets) - len(self.closed)

    def _check(self) -> None:
        if len(self.arrivals) >= self.live:
            self.done.set()

    async def _read(self, ws):
        try:
            async for raw in ws:
                at = time.perf_counter()
                if self.marker in raw:
                    self.arrivals.append(at)
                    self._check()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - closed with an error code
            self.closed.append(f"{type(exc).__name__}: {exc}"[:120])
        else:
            self.closed.append(f"closed {ws.close_code}")
        self._check()

    def arm(self, marker: str) -> None:
        self.marker, self.arrivals, self.done = marker, [], asyncio.Event()

    async def close(self):
        for task in self.tasks:
            task.cancel()
        await wsc.close_many(self.sockets)


async def _measure(ns) -> dict:
    import orjson
    from asgiref.sync import async_to_sync

    wsc.raise_nofile()
    users = math.ceil(ns.sockets / 5)
    tokens = await asyncio.to_thread(wsc.make_socket_users, ns.organization_id, ns.owner_id, users, "b6")
    from channels.layers import get_channel_layer

    from apps.accounts.models import Organization, User
    from apps.events.services import publish

    organization = await asyncio.to_thread(Organization.objects.get, pk=ns.organization_id)
    owner = await asyncio.to_thread(User.objects.get, pk=ns.owner_id)
    layer = get_channel_layer()
    hub_url = f"ws://127.0.0.1:{ns.product_port}{wsc.HUB_PATH}"

    started = time.perf_counter()
    bare = Fleet(await wsc.open_many(lambda i: wsc.connect(f"ws://127.0.0.1:{ns.bare_port}/broadcast"), ns.sockets))
    bare_connect = time.perf_counter() - started
    started = time.perf_counter()
    product = Fleet(await wsc.open_many(lambda i: wsc.open_hub(hub_url, tokens[i // 5], [EVENT]), ns.sockets))
    product_connect = time.perf_counter() - started
    await asyncio.sleep(2.0)

    def publish_product(marker):
        publish(organization, EVENT, {"changed": [marker]}, actor=owner, component="config")

    def publish_bare(marker):
        text = orjson.dumps(
            {"type": EVENT, "timestamp": "2026-01-01T00:00:00.000000Z", "data": {"changed": [marker]}, "seq": 0}
        ).decode()
        async_to_sync(layer.group_send)("bench.fanout", {"type": "bench.event", "text": text})

    async def one_round(fleet: Fleet, send, marker: str) -> tuple[float, float, int]:
        fleet.arm(marker)
        begun = time.perf_counter()
        await asyncio.to_thread(send, marker)
        try:  # the hub's reconcile pass would deliver a dropped channel message within ~6 s
            await asyncio.wait_for(fleet.done.wait(), LOST_AFTER)
        except TimeoutError:
            pass
        arrivals = sorted(fleet.arrivals)
        if not arrivals:
            return float("nan"), float("nan"), fleet.live
        return (
            (arrivals[-1] - begun) * 1000,
            (arrivals[len(arrivals) // 2] - begun) * 1000,
            max(0, fleet.live - len(arrivals)),
        )

    # warm-up round each (code paths, connection pools), not counted
    await one_round(bare, publish_bare, "b6-warm-bare")
    await one_round(product, publish_product, "b6-warm-product")
    await asyncio.sleep(2.5)
    results = {"product": [], "bare": []}
    for index in range(ns.rounds):
        order = [("bare", bare, publish_bare), ("product", product, publish_product)]
        if index % 2:
            order.reverse()
        for name, fleet, send in order:
            results[name].append(await one_round(fleet, send, f"b6-{name}-{index}-"))
            await asyncio.sleep(2.0 if name == "product" else 0.5)  # the hub sockets' reconcile pass
    closed = {
        "product_closed": len(product.closed),
        "bare_closed": len(bare.closed),
        "closed_reasons": sorted(set(product.closed + bare.closed))[:5],
    }
    await product.close()
    await bare.close()

    def summary(name):
        rows = results[name]
        return {
            f"{name}_ms": round(statistics.median(r[0] for r in rows), 1),
            f"{name}_socket_p50_ms": round(statistics.median(r[1] for r in rows), 1),
            f"{name}_rounds_ms": [round(r[0]) for r in rows],
            f"{name}_lost": sum(r[2] for r in rows),
        }

    result = {
        "sockets": ns.sockets,
        "rounds": ns.rounds,
        "users": users,
        "product_connect_s": round(product_connect, 2),
        "bare_connect_s": round(bare_connect, 2),
        **summary("product"),
        **summary("bare"),
        **closed,
    }
    print(f"B6 {result}")
    return result
