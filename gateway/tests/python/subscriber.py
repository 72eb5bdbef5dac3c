"""A Python subscriber acting as one principal (by configuration): prints `ready`, then
the data of the first message on the pattern, then exits. Used by scripts/test-gateway.sh
to show that a `curl` publish through the gateway reaches Python masked per principal."""

import asyncio
import sys

import busbar


async def main(url: str, policy: str, principal: str, roles: str, pattern: str) -> None:
    bus = await busbar.connect(backend="nats", nats_url=url, policy=policy, principal=principal, roles=roles)
    sub = await bus.subscribe(pattern)
    await bus.flush()
    print("ready", flush=True)
    message = await asyncio.wait_for(sub.__anext__(), 20)
    print(message.data.decode(), flush=True)
    await bus.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
