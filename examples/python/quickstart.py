"""busbar quickstart: wildcards, a queue group and a request/reply round trip.

Runs on the embedded in-memory bus by default. The same program talks to a NATS
server when the environment says so (BUSBAR_BACKEND=nats BUSBAR_NATS_URL=...).

    python examples/python/quickstart.py
"""

from __future__ import annotations

import asyncio

import busbar


async def take(sub: busbar.Subscription, n: int) -> list[busbar.Message]:
    """Takes `n` messages from `sub`, waiting at most two seconds for each."""
    out: list[busbar.Message] = []
    while len(out) < n:
        out.append(await asyncio.wait_for(sub.__anext__(), 2))
    return out


async def main() -> None:
    async with await busbar.connect() as bus:
        print(f"connected to the {bus.backend} bus\n")

        # 1. Subjects are dot-separated tokens. `*` matches one token, `>` one or more.
        print("1. wildcards")
        every_order = await bus.subscribe("orders.>")
        eu_orders = await bus.subscribe("orders.eu.*")
        for subject in ["orders.eu.created", "orders.us.created", "orders.eu.paid.late"]:
            await bus.publish(subject, {"qty": 1})
            print(f"   published {subject}")
        await bus.flush()
        print(f"   'orders.>'    got {[m.subject for m in await take(every_order, 3)]}")
        print(f"   'orders.eu.*' got {[m.subject for m in await take(eu_orders, 1)]}")
        print(
            "   ('orders.eu.*' wants exactly one token after 'orders.eu',"
            " so it skips orders.eu.paid.late)\n"
        )

        # 2. A queue group shares the work: each message goes to one member.
        print("2. queue group 'workers' with two members")
        worker_a = await bus.queue_subscribe("jobs.resize", "workers")
        worker_b = await bus.queue_subscribe("jobs.resize", "workers")
        for n in range(1, 5):
            await bus.publish("jobs.resize", f"image-{n}")
        await bus.flush()
        # Each job goes to one member; which one is the bus's choice (in turn on the
        # in-memory bus, at random on NATS). Collect from both until all four are in.
        got: dict[str, list[str]] = {"a": [], "b": []}
        pending = {
            asyncio.ensure_future(worker_a.__anext__()): "a",
            asyncio.ensure_future(worker_b.__anext__()): "b",
        }
        while len(got["a"]) + len(got["b"]) < 4:
            done, _ = await asyncio.wait(pending, timeout=2, return_when=asyncio.FIRST_COMPLETED)
            if not done:
                raise TimeoutError("the queue group did not get all four jobs in 2 s")
            for fut in done:
                who = pending.pop(fut)
                got[who].append(fut.result().data.decode())
                worker = worker_a if who == "a" else worker_b
                pending[asyncio.ensure_future(worker.__anext__())] = who
        for fut in pending:
            fut.cancel()
        print(f"   worker a took {got['a']}")
        print(f"   worker b took {got['b']}")
        print("   four jobs, each done once\n")

        # 3. Request/reply: the request carries an inbox and a correlation id; the reply echoes it.
        print("3. request/reply")
        responder = await bus.subscribe("time.now")

        async def serve() -> int:
            answered = 0
            async for request in responder:
                asked = request.data.decode()
                await request.respond(f"it is tea time (you asked {asked!r})")
                answered += 1
            return answered

        server = asyncio.ensure_future(serve())
        reply = await bus.request("time.now", "what time is it?", timeout=2)
        print(f"   reply: {reply.data.decode()}")
        print(f"   reply correlation id  {reply.correlation_id}")

        # Nobody listens on `time.later`: the request fails at once (no_responders) instead
        # of waiting; on Kafka, which cannot tell who listens, it fails after its timeout.
        try:
            await bus.request("time.later", "hello?", timeout=2)
            print("   unexpected reply from time.later")
        except busbar.NoResponders as e:
            print(f"   request to time.later failed: [{e.code}] {e}")

        # Bad input gets a clear error, never a silent drop.
        try:
            await bus.publish("orders..eu", "x")
        except busbar.InvalidSubject as e:
            print(f'\n4. bad input\n   publish to "orders..eu": [{e.code}] {e}')

    answered = await server
    stats = bus.stats()
    print(
        f"\nclosed: {stats['published']} published, {stats['delivered']} delivered, "
        f"{answered} request(s) answered"
    )


if __name__ == "__main__":
    asyncio.run(main())
