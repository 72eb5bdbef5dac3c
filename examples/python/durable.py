"""busbar durable streams: a stream, publishes the broker acknowledges (one of them
deduplicated by id), a durable consumer that naks, acks and terminates, and the dead
letter that termination leaves in DLQ_DLQ. The same scenario as examples/c/durable.c.

Runs on the embedded in-memory bus by default; BUSBAR_BACKEND=nats BUSBAR_NATS_URL=...
puts it on a JetStream-enabled NATS server (a fresh one: streams and consumers persist).

    python examples/python/durable.py
"""

from __future__ import annotations

import asyncio

import busbar

BROKEN = b'{"total":'


async def next_of(sub: busbar.DurableSubscription, label: str) -> busbar.DurableMessage:
    """The next delivery of `sub` (waiting at most 5 s), with its payload printed."""
    msg = await asyncio.wait_for(sub.__anext__(), 5)
    print(f"   {label:<8} got {msg.data.decode()} (sequence {msg.sequence}, attempt {msg.attempt})")
    return msg


async def main() -> None:
    async with await busbar.connect() as bus:
        # 1. A stream over orders.> (declaring again is harmless).
        await bus.declare_stream("ORDERS", ["orders.>"])

        # 2. Publishes wait for the broker's ack; the same id twice is stored once.
        for _ in range(2):
            ack = await bus.publish_durable("orders.created", {"total": 12}, id="order-42")
            duplicate = " (duplicate: stored once)" if ack.duplicate else ""
            print(f"1. stored in {ack.stream} at sequence {ack.sequence}{duplicate}")
        await bus.publish_durable("orders.created", BROKEN)

        # 3. A durable consumer: nak redelivers after the backoff, ack settles, term
        #    dead-letters. Handlers must be idempotent: delivery is at-least-once.
        async with await bus.durable_subscribe(
            "ORDERS", "billing", backoff=(0.1, 2.0, 60.0)
        ) as billing:
            print("2. consumer billing:")
            for _ in range(3):  # order-42 twice (nak, then ack), the broken one once
                msg = await next_of(billing, "billing")
                if msg.data == BROKEN:
                    await msg.term("unparsable order")
                    print("            terminated: to the dead-letter stream")
                elif msg.attempt == 1:
                    await msg.nak()  # after the consumer's backoff
                    print("            nacked: comes again after 100 ms")
                else:
                    await msg.ack()
                    try:
                        await msg.ack()
                    except busbar.InvalidArgument as e:
                        print(f"            acked; acking twice: [{e.code}]")

        # 4. The dead letter, read like any stream (dead letters of orders.> only).
        async with await bus.durable_subscribe("DLQ_DLQ", "auditor", filter="dlq.orders.>") as dead:
            print("3. dead letters:")
            letter = await next_of(dead, "auditor")
            reason = letter.headers.get("busbar-dlq-reason", "?")
            print(f'   on {letter.subject}, reason "{reason}"')
            await letter.ack()

        info = await bus.stream_info("ORDERS")
        print(
            f"4. {info.name} holds {info.messages} messages, "
            f"sequences {info.first_sequence} to {info.last_sequence}"
        )


if __name__ == "__main__":
    asyncio.run(main())
