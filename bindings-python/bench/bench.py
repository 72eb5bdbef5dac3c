"""busbar's Python module versus nats-py, side by side in one run against one private
nats-server; plus busbar's in-memory publish→deliver.

    .venv-python/bin/python bindings-python/bench/bench.py [--messages 200000] [--requests 5000]

(run `bash scripts/test-python.sh` once first: it makes .venv-python with both installed).
Measures, for each client, on its own connections:
  publish            N publishes of a 16-byte payload, then a flush (a server round trip);
                     busbar always sends its CloudEvents headers, so nats-py runs twice:
                     bare, and with the same headers (a fresh id and time each)
  publish→subscribe  N publishes received by a subscriber on a second connection
  request/reply      sequential requests to a responder of the same client: p50 / p99
Rounds interleave busbar and nats-py; each figure is the median of --rounds rounds, each ratio
the median of the per-round ratios; the run is printed as one table with the load average.
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
from typing import TypeVar

import nats
from nats.aio.msg import Msg

import busbar

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from nats_server import NatsServer, flush_nats_py

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
    """The header block busbar puts on a plain NATS publish, for a like-for-like nats-py run."""
    return {
        "ce-specversion": "1.0",
        "ce-id": str(uuid.uuid4()),
        "ce-source": "busbar",
        "ce-type": "busbar.event",
        "ce-time": datetime.now(timezone.utc).isoformat(),
    }


async def natspy_publish(url: str, n: int, with_headers: bool = False) -> float:
    nc = await nats.connect(url)
    start = time.perf_counter()
    for _ in range(n):
        headers = cloudevents_headers() if with_headers else None
        await nc.publish("bench.pub", PAYLOAD, headers=headers)
    await flush_nats_py(nc)
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
    await flush_nats_py(subscriber)
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
    await flush_nats_py(server_nc)
    samples = []
    for i in range(n + 100):
        start = time.perf_counter()
        await nc.request("bench.req", PAYLOAD, timeout=2)
        if i >= 100:
            samples.append(time.perf_counter() - start)
    await nc.close()
    await server_nc.close()
    return percentiles(samples)


T = TypeVar("T")


async def interleaved(
    rounds: int, ours: Callable[[], Awaitable[T]], theirs: Callable[[], Awaitable[T]]
) -> tuple[list[T], list[T]]:
    """Each round runs both sides, busbar first in even rounds and last in odd ones, so
    drift in the machine's load hits both alike."""
    a: list[T] = []
    b: list[T] = []
    for i in range(rounds):
        if i % 2 == 0:
            a.append(await ours())
            b.append(await theirs())
        else:
            b.append(await theirs())
            a.append(await ours())
    return a, b


def median_ratio(a: list[float], b: list[float]) -> float:
    return statistics.median(x / y for x, y in zip(a, b))


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--requests", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    n, r, k = args.messages, args.requests, args.rounds

    server = NatsServer()
    try:
        url = server.url
        nats_cfg = {"backend": "nats", "nats_url": url}
        print(
            f"private nats-server at {url}; {n} messages of {len(PAYLOAD)} B, {r} requests; "
            f"{k} interleaved rounds, medians; load average {load_average()}"
        )
        pub_b, pub_n = await interleaved(
            k, lambda: busbar_publish(url, n), lambda: natspy_publish(url, n)
        )
        pub_b2, pub_nh = await interleaved(
            k,
            lambda: busbar_publish(url, n),
            lambda: natspy_publish(url, n, with_headers=True),
        )
        flow_b, flow_n = await interleaved(
            k, lambda: busbar_pubsub(n, **nats_cfg), lambda: natspy_pubsub(url, n)
        )
        lat_b, lat_n = await interleaved(
            k, lambda: busbar_request(url, r), lambda: natspy_request(url, r)
        )
        mem = [await busbar_pubsub(n, backend="memory") for _ in range(k)]
    finally:
        server.close()

    med = statistics.median
    fb, fn = [f[0] for f in flow_b], [f[0] for f in flow_n]
    got_b, got_n = min(f[1] for f in flow_b), min(f[1] for f in flow_n)
    p50b, p50n = [x[0] for x in lat_b], [x[0] for x in lat_n]
    p99b, p99n = [x[1] for x in lat_b], [x[1] for x in lat_n]
    rows = [
        (
            "NATS publish (msgs/s)",
            f"{med(pub_b):,.0f}",
            f"{med(pub_n):,.0f}",
            f"{median_ratio(pub_b, pub_n):.2f}x",
        ),
        (
            "  nats-py sending busbar's ce- headers",
            f"{med(pub_b2):,.0f}",
            f"{med(pub_nh):,.0f}",
            f"{median_ratio(pub_b2, pub_nh):.2f}x",
        ),
        (
            "NATS publish→subscribe (msgs/s)",
            f"{med(fb):,.0f} (≥{got_b}/{n} recv)",
            f"{med(fn):,.0f} (≥{got_n}/{n} recv)",
            f"{median_ratio(fb, fn):.2f}x",
        ),
        ("NATS request p50 (µs)", f"{med(p50b):.0f}", f"{med(p50n):.0f}", ""),
        ("NATS request p99 (µs)", f"{med(p99b):.0f}", f"{med(p99n):.0f}", ""),
        (
            "memory publish→deliver (msgs/s)",
            f"{med(m[0] for m in mem):,.0f} (≥{min(m[1] for m in mem)}/{n} recv)",
            "-",
            "-",
        ),
    ]
    table = [("", "busbar", "nats-py", "busbar / nats-py"), *rows]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths)))
    print(
        "(rates: the median of per-round ratios, higher is better for busbar); "
        f"load average at the end {load_average()}"
    )


if __name__ == "__main__":
    asyncio.run(main())
