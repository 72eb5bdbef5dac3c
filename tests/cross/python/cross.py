"""The Python participant of the cross-language test (tests/cross/run.py drives it).

cross.py publish URL SUBJECT DATA ID TYPE CONTENT_TYPE CORRELATION_ID CLASSIFICATION
         TRACEPARENT TRACESTATE [HEADER_NAME HEADER_VALUE]...
cross.py read URL COUNT   # prints "ready", then one JSON line per message received
cross.py discover URL NAME  # prints {"ping": [...], "info": [...]} for services NAME
cross.py serve URL NAME   # a service NAME 1.2.3, endpoint "echo" on svc.NAME.echo;
                          # prints "ready ID", serves until stdin closes
"""

import asyncio
import json
import sys

import busbar


async def publish(bus: busbar.Bus, args: list[str]) -> None:
    subject, data, id, event_type, content_type, correlation_id = args[:6]
    classification, traceparent, tracestate = args[6:9]
    pairs = args[9:]
    headers = dict(zip(pairs[::2], pairs[1::2]))
    await bus.publish(
        subject,
        data.encode(),
        headers=headers,
        id=id,
        event_type=event_type,
        content_type=content_type,
        correlation_id=correlation_id,
        classification=classification,
        traceparent=traceparent,
        tracestate=tracestate,
    )
    await bus.flush()


async def read(bus: busbar.Bus, count: int) -> None:
    sub = await bus.subscribe("cross.>")
    await bus.flush()
    print("ready", flush=True)
    got = 0
    async for msg in sub:
        record = {
            "subject": msg.subject,
            "data": msg.data.decode(),
            "id": msg.id,
            "type": msg.event_type,
            "content_type": msg.content_type,
            "correlation_id": msg.correlation_id,
            "classification": msg.classification,
            "traceparent": msg.traceparent,
            "tracestate": msg.tracestate,
            "headers": msg.headers,
            "keyid": msg.keyid,
            "time_ms": round(msg.time * 1000),
        }
        print(json.dumps(record, ensure_ascii=False), flush=True)
        got += 1
        if got == count:
            break


async def main() -> None:
    role, url, *rest = sys.argv[1:]
    bus = await busbar.connect(backend="nats", nats_url=url)
    try:
        if role == "publish":
            await publish(bus, rest)
        elif role == "serve":
            service = await bus.start_service(rest[0], "1.2.3", description="the cross-language service")
            await service.add_endpoint("echo", f"svc.{rest[0]}.echo", lambda request: request.data)
            await bus.flush()
            print(f"ready {service.id}", flush=True)
            # Serves until the driver closes stdin.
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
            await service.stop()
        elif role == "discover":
            ping = await bus.discover("PING", name=rest[0], wait=0.5)
            info = await bus.discover("INFO", name=rest[0], wait=0.5)
            print(json.dumps({"ping": ping, "info": info}))
        else:
            await read(bus, int(rest[0]))
    finally:
        await bus.close()


asyncio.run(main())
