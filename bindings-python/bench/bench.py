"""busbar's Python module versus nats-py, side by side in one run against one private
nats-server; plus busbar's in-memory publish→deliver.

    .venv-python/bin/python bindings-python/bench/bench.py [--messages 200000] [--requests 5000]

(run `bash scripts/test-python.sh` once first: it makes .venv-python with both installed).
Measures, for each client, on its own connections:
  publish            N publishes of a 16-byte payload, then a flush (a server round trip);
                     busbar always sends its CloudEvents headers, so nats-py runs twice:
                     bare, and with the same header block (a fresh id and time each)
  publish→subscribe  N publishes received by a subscriber on a second connection
  request/reply      sequential requests to a responder of the same client: p50 / p99
Each figure is the best of --rounds runs; the run is printed as one table.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path

import nats
from nats.aio.msg import Msg

import busbar

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from nats_server import NatsServer

PAYLOAD = b"0123456789abcdef"


async def busbar_publish(url: str, n: int) -> float:
    bus = await busbar.connect(backend="nats", nats_url=url)
    start = time.perf_counter()
    for _ in range(n):
        await bus.publish("bench.pub", PAYLOAD)
    await bus.flush()
    elapsed = time.perf_counter() - start
    await bus.close()
    return n / elapsed


def cloudevents_headers() -> dict[str, str]:
    """The header block busbar puts on every NATS message, for a like-for-like nats-py run."""
    event_id = str(uuid.uuid4())
    return {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "Nats-Msg-Id": event_id,
        "ce-source": "busbar",
        "ce-type": "busbar.event",
        "ce-subject": "bench.pub",
        "ce-time": datetime.now(timezone.utc).isoformat(),
    }


async def natspy_publish(url: str, n: int, with_headers: bool = False) -> float:
    nc = await nats.connect(url)
    start = time.perf_counter()
    for _ in range(n):
        headers = cloudevents_headers() if with_headers else None
        await nc.publish("bench.pub", PAYLOAD, headers=headers)
    await nc.flush()
    elapsed = time.perf_counter() - start
    await nc.close()
    return n / elapsed


class Counter:
    """Counts arrivals; `all_in` is set at the n-th."""

    def __init__(self, n: int) -> None:
        self.n, self.got, self.all_in = n, 0, asyncio.Event()

    def add(self) -> None:
        self.got += 1
        if self.got == self.n:
            self.all_in.set()


async def timed_flow(
    counter: Counter, publish: Callable[[], Awaitable[None]], flush: Callable[[], Awaitable[None]]
) -> tuple[float, int]:
    """Publishes `counter.n` messages while a subscriber counts them: the rate from the first
    publish to the last delivery, and how many arrived (within 30 s)."""
    start = time.perf_counter()
    for _ in range(counter.n):
        await publish()
    await flush()
    try:
        await asyncio.wait_for(counter.all_in.wait(), 30)
    except asyncio.TimeoutError:
        pass
    return counter.got / (time.perf_counter() - start), counter.got


async def busbar_pubsub(n: int, **config: str) -> tuple[float, int]:
    """The subscriber's buffer holds every message, as nats-py's pending limit below: the
    publishing loop does not yield to the event loop while its publishes finish at once."""
    pub = await busbar.connect(**config)
    room = {"subscription_capacity": str(n + 1)}
    subscriber = await busbar.connect(**config, **room) if config.get("backend") == "nats" else pub
    sub = await subscriber.subscribe("bench.flow")
    await subscriber.flush()
    counter = Counter(n)

    async def consume() -> None:
        async for _ in sub:
            counter.add()

    consumer = asyncio.ensure_future(consume())
    result = await timed_flow(counter, lambda: pub.publish("bench.flow", PAYLOAD), pub.flush)
    consumer.cancel()
    await pub.close()
    await subscriber.close()
    return result


async def natspy_pubsub(url: str, n: int) -> tuple[float, int]:
    """nats-py at its fastest: a callback subscriber with room for every message."""
    pub = await nats.connect(url)
    subscriber = await nats.connect(url, pending_size=1024 * 1024 * 1024)
    counter = Counter(n)

    async def on_message(_: Msg) -> None:
        counter.add()

    await subscriber.subscribe("bench.flow", cb=on_message, pending_msgs_limit=n + 1)
    await subscriber.flush()
    result = await timed_flow(counter, lambda: pub.publish("bench.flow", PAYLOAD), pub.flush)
    await pub.close()
    await subscriber.close()
    return result


def percentiles(samples: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(samples, n=100)
    return q[49] * 1e6, q[98] * 1e6


async def busbar_request(url: str, n: int) -> tuple[float, float]:
    bus = await busbar.connect(backend="nats", nats_url=url)
    server_bus = await busbar.connect(backend="nats", nats_url=url)
    responder = await server_bus.subscribe("bench.req")
    await server_bus.flush()

    async def serve() -> None:
        async for req in responder:
            await req.respond(PAYLOAD)

    server = asyncio.ensure_future(serve())
    samples = []
    for i in range(n + 100):
        start = time.perf_counter()
        await bus.request("bench.req", PAYLOAD, timeout=2)
        if i >= 100:  # the first hundred warm up
            samples.append(time.perf_counter() - start)
    server.cancel()
    await bus.close()
    await server_bus.close()
    return percentiles(samples)


async def natspy_request(url: str, n: int) -> tuple[float, float]:
    nc = await nats.connect(url)
    server_nc = await nats.connect(url)

    async def answer(msg: Msg) -> None:
        await msg.respond(PAYLOAD)

    await server_nc.subscribe("bench.req", cb=answer)
    await server_nc.flush()
    samples = []
    for i in range(n + 100):
        start = time.perf_counter()
        await nc.request("bench.req", PAYLOAD, timeout=2)
        if i >= 100:
            samples.append(time.perf_counter() - start)
    await nc.close()
    await server_nc.close()
    return percentiles(samples)


async def best_rate(rounds: int, run: Callable[[], Awaitable[float]]) -> float:
    return max([await run() for _ in range(rounds)])


async def best_flow(
    rounds: int, run: Callable[[], Awaitable[tuple[float, int]]]
) -> tuple[float, int]:
    results = [await run() for _ in range(rounds)]
    return max(results, key=lambda r: r[0])


async def best_latency(
    rounds: int, run: Callable[[], Awaitable[tuple[float, float]]]
) -> tuple[float, float]:
    results = [await run() for _ in range(rounds)]
    return min(results, key=lambda r: r[0])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--requests", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    n, r, k = args.messages, args.requests, args.rounds

    server = NatsServer()
    try:
        url = server.url
        nats_cfg = {"backend": "nats", "nats_url": url}
        print(
            f"private nats-server at {url}; {n} messages of {len(PAYLOAD)} B, "
            f"{r} requests, best of {k}"
        )
        pub_b = await best_rate(k, lambda: busbar_publish(url, n))
        pub_n = await best_rate(k, lambda: natspy_publish(url, n))
        pub_nh = await best_rate(k, lambda: natspy_publish(url, n, with_headers=True))
        flow_b, got_b = await best_flow(k, lambda: busbar_pubsub(n, **nats_cfg))
        flow_n, got_n = await best_flow(k, lambda: natspy_pubsub(url, n))
        lat_b = await best_latency(k, lambda: busbar_request(url, r))
        lat_n = await best_latency(k, lambda: natspy_request(url, r))
        mem, got_m = await best_flow(k, lambda: busbar_pubsub(n, backend="memory"))
    finally:
        server.close()

    rows = [
        ("NATS publish (msgs/s)", f"{pub_b:,.0f}", f"{pub_n:,.0f}", f"{pub_b / pub_n:.2f}x"),
        (
            "  nats-py sending busbar's ce- headers",
            f"{pub_b:,.0f}",
            f"{pub_nh:,.0f}",
            f"{pub_b / pub_nh:.2f}x",
        ),
        (
            "NATS publish→subscribe (msgs/s)",
            f"{flow_b:,.0f} ({got_b}/{n} recv)",
            f"{flow_n:,.0f} ({got_n}/{n} recv)",
            f"{flow_b / flow_n:.2f}x",
        ),
        (
            "NATS request p50 (µs)",
            f"{lat_b[0]:.0f}",
            f"{lat_n[0]:.0f}",
            f"{lat_n[0] / lat_b[0]:.2f}x",
        ),
        (
            "NATS request p99 (µs)",
            f"{lat_b[1]:.0f}",
            f"{lat_n[1]:.0f}",
            f"{lat_n[1] / lat_b[1]:.2f}x",
        ),
        ("memory publish→deliver (msgs/s)", f"{mem:,.0f} ({got_m}/{n} recv)", "-", "-"),
    ]
    table = [("", "busbar", "nats-py", "busbar vs nats-py"), *rows]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths)))
    print("(latency ratio: nats-py time / busbar time, above 1 means busbar is faster)")


if __name__ == "__main__":
    asyncio.run(main())
