"""Exits while busbar's runtime threads log (run by test_robustness.py, not by pytest):
16 NATS connections, never closed, whose server is killed just before `main()` returns,
so records ("disconnected", "client error") come from runtime threads while the
interpreter shuts down. Before busbar closed that door at `atexit`, about one run in ten
died with SIGABRT or SIGSEGV. Argument: the folder of nats_server.py."""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import time

sys.path.insert(0, sys.argv[1])

import busbar
from nats_server import NatsServer

buses: list[busbar.Bus] = []  # kept open on purpose: their connections break at exit


async def main() -> None:
    server = NatsServer()
    for _ in range(16):
        bus = await busbar.connect(backend="nats", nats_url=server.url)
        buses.append(bus)
        sub = await bus.subscribe("a.>")
        await bus.publish("a.b", b"x")
        await sub.__anext__()
    # Every connection breaks: records come from runtime threads as we exit. close() kills
    # the server and removes its store, so no run leaves a folder behind.
    server.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(main())
    time.sleep(random.uniform(0, 0.01))  # exit at a different moment of the records
