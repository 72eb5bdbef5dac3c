"""Publishes an order a second to `orders.<n>` and serves its metrics, until Ctrl-C.

    BUSBAR_BACKEND=nats BUSBAR_NATS_URL=nats://127.0.0.1:4222 \\
        BUSBAR_METRICS_ADDR=127.0.0.1:9464 python examples/observability/producer.py
    python examples/observability/producer.py --demo   # in-memory, ten orders, then stop

Its log records go to Python's `logging` (logger `busbar`); its metrics to
http://127.0.0.1:9464/metrics (with BUSBAR_METRICS_ADDR), `/readyz` says whether it is
connected.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sys

import busbar


async def main(demo: bool) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    bus = await busbar.connect(source="orders-producer")
    try:
        for n in itertools.count():
            if demo and n == 10:
                break
            await bus.publish(f"orders.{n}", {"order": n, "qty": 1})
            if not bus.health()["ready"]:
                logging.getLogger("producer").warning("not connected: %s", bus.health())
            await asyncio.sleep(0 if demo else 1)
        await bus.flush()
        published = [
            line for line in bus.metrics().splitlines() if line.startswith("busbar_published_total")
        ]
        print(published[0])
    finally:
        await bus.close()


if __name__ == "__main__":
    try:
        asyncio.run(main("--demo" in sys.argv))
    except KeyboardInterrupt:
        pass
