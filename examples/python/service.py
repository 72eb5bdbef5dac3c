"""A NATS-protocol service: `calc` with one endpoint, `calc.double`, found by discovery.

Every member answers `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS` (so `nats micro ls` and
nats.js or async-nats service clients see it), shares the endpoint's requests with the
other members of its queue group, and counts requests and errors. A handler that raises
answers with an error reply (`Nats-Service-Error` headers).

    BUSBAR_BACKEND=nats BUSBAR_NATS_URL=nats://127.0.0.1:4222 python examples/python/service.py
    python examples/python/service.py --demo   # in-memory: start, call, discover, stop
"""

from __future__ import annotations

import asyncio
import sys

import busbar


class Refused(ValueError):
    code = 422  # the error reply's Nats-Service-Error-Code


def double(request: busbar.Message) -> str:
    n = int(request.data)
    if n < 0:
        raise Refused("only numbers from 0")
    return str(2 * n)


async def start(bus: busbar.Bus) -> busbar.Service:
    service = await bus.start_service("calc", "1.0.0", description="doubles numbers")
    await service.add_endpoint("double", "calc.double", double)
    return service


async def demo() -> None:
    async with await busbar.connect() as bus:
        service = await start(bus)
        doubled = await bus.request("calc.double", "21", timeout=2)
        print(f"calc.double 21 -> {doubled.data.decode()}")
        refused = await bus.request("calc.double", "-1", timeout=2)
        print(
            f"calc.double -1 -> error {refused.headers['Nats-Service-Error-Code']}: "
            f"{refused.headers['Nats-Service-Error']}"
        )
        for found in await bus.discover("STATS", name="calc", wait=0.2):
            endpoint = found["endpoints"][0]
            print(
                f"discovered {found['name']} {found['version']} ({found['id']}): "
                f"{endpoint['num_requests']} requests, {endpoint['num_errors']} errors"
            )
        await service.stop()


async def main() -> None:
    async with await busbar.connect() as bus:
        service = await start(bus)
        print(f"calc {service.id} answering calc.double on the {bus.backend} bus; Ctrl-C stops")
        await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(demo() if "--demo" in sys.argv else main())
    except KeyboardInterrupt:
        pass
