"""The whole API in one scenario, the same in examples/c/tour.c and examples/node/tour.js:
publish with every attribute and read them back, serve requests, watch connection events,
and subscribe as a principal under a policy (docs/design.md §9).

    python examples/python/tour.py          # BUSBAR_BACKEND=nats BUSBAR_NATS_URL=... for NATS
"""

import asyncio
import json
import os
import tempfile

import busbar

POLICY = {
    "classes": ["pii"],
    "fields": [{"path": "/ssn", "class": "pii", "action": "partial", "keep": 4}],
    "grants": {"hr": ["pii"]},
}


async def attributes(bus: busbar.Bus) -> None:
    sub = await bus.subscribe("tour.attrs")
    await bus.publish(
        "tour.attrs",
        {"qty": 1},
        id="order-7",
        event_type="com.example.order.created",
        correlation_id="corr-1",
        classification="internal",
        traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        tracestate="tour=1",
        headers={"tenant": "st-marys"},
    )
    msg = await sub.__anext__()
    print(f"read {msg.id} {msg.event_type} {msg.content_type} {msg.correlation_id}")
    print(f"     {msg.classification} {msg.tracestate} {msg.headers} keyid={msg.keyid}")
    await sub.unsubscribe()


async def serving(bus: busbar.Bus) -> None:
    sub = await bus.subscribe("tour.upper")
    server = asyncio.ensure_future(busbar.serve(sub, lambda req: req.data.upper()))
    reply = await bus.request("tour.upper", b"hello", timeout=2, headers={"caller": "tour"})
    print(f"served: {reply.data.decode()}")
    await sub.unsubscribe()
    print(f"answered {await server} request(s)")


async def events(bus: busbar.Bus) -> None:
    seen: list[str] = []

    async def watch() -> None:
        async for event in bus.connection_events():
            seen.append(event.kind)

    watcher = asyncio.ensure_future(watch())
    await asyncio.sleep(0.1)
    watcher.cancel()
    print(f"connection events so far: {seen or 'none'} ({bus.backend} bus)")


def write_policy(directory: str) -> str:
    path = os.path.join(directory, "policy.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(POLICY, f)
    return path


async def as_principal() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        bus = await busbar.connect(policy=write_policy(tmp))
        async with bus:
            clerk = await bus.subscribe_as("clerk", "staff.>", classes=["pii"])
            await bus.publish("staff.joined", {"ssn": "123-45-6789"})
            msg = await clerk.__anext__()
            masked = bus.policy_stats()["masked"]
            print(f"clerk sees {msg.json()}; policy counters: {masked} masked")


async def main() -> None:
    bus = await busbar.connect()
    async with bus:
        await attributes(bus)
        await serving(bus)
        await events(bus)
    await as_principal()


asyncio.run(main())
