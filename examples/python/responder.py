"""A service that answers requests: `greet.<name>` → a JSON greeting, until Ctrl-C.

It serves requests on a queue group, so several copies share the load; each request
is answered by one of them. Requests carry a correlation id that the reply echoes.

    BUSBAR_BACKEND=nats BUSBAR_NATS_URL=nats://127.0.0.1:4222 python examples/python/responder.py
    python examples/python/responder.py --demo   # in-memory: serve, send three requests, stop
"""

from __future__ import annotations

import asyncio
import sys

import busbar


async def serve(bus: busbar.Bus, ready: asyncio.Event | None = None) -> int:
    """Answers `greet.*` requests until the subscription ends; returns how many."""
    answered = 0
    async with await bus.queue_subscribe("greet.*", "greeters") as requests:
        if ready is not None:
            ready.set()
        async for request in requests:
            name = request.subject.split(".", 1)[1]
            try:
                await request.respond({"greeting": f"hello, {name}", "request_id": request.id})
                answered += 1
            except busbar.BusError as e:  # e.g. a plain publish, not a request
                print(f"cannot answer {request.subject}: [{e.code}] {e}", file=sys.stderr)
    return answered


async def demo() -> None:
    async with await busbar.connect() as bus:
        ready = asyncio.Event()
        server = asyncio.ensure_future(serve(bus, ready))
        await ready.wait()
        for name in ["ada", "grace", "linus"]:
            reply = await bus.request(f"greet.{name}", b"", timeout=2)
            print(f"{reply.subject}: {reply.json()} (correlation id {reply.correlation_id})")
    print(f"served {await server} requests")


async def main() -> None:
    async with await busbar.connect() as bus:
        print(f"answering greet.* on the {bus.backend} bus; Ctrl-C stops")
        await serve(bus)


if __name__ == "__main__":
    try:
        asyncio.run(demo() if "--demo" in sys.argv else main())
    except KeyboardInterrupt:
        pass
