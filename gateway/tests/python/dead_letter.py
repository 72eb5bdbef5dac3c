"""Makes one dead letter: stream JOBS over jobs.>, one job published durably, and a
worker that terminates it (so it lands in DLQ_DLQ as dlq.jobs.run)."""

import asyncio
import sys

import busbar


async def main(url: str) -> None:
    bus = await busbar.connect(backend="nats", nats_url=url)
    await bus.declare_stream("JOBS", ["jobs.>"])
    await bus.publish_durable("jobs.run", b'{"job": 7}')
    worker = await bus.durable_subscribe("JOBS", "worker", max_deliver=1)
    job = await asyncio.wait_for(worker.__anext__(), 10)
    await job.term("broken input")
    await bus.flush()
    await bus.close()
    print("dead-lettered", job.sequence, flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
