"""A responder on every subject (`>`), for the schemathesis run of scripts/test-gateway.sh:
it echoes each request's payload (JetStream's own `$JS.` API aside) and ignores plain
publishes, so a fuzzed `POST /v1/request/{subject}` has an answer and `no_responders`
(503) never happens. Acts
as a clinician, so restricted subjects are answered too (the gateway still refuses a
caller without the role). Prints `ready`, then runs until killed."""

import asyncio
import sys

import busbar


async def main(url: str, policy: str) -> None:
    bus = await busbar.connect(backend="nats", nats_url=url, policy=policy, principal="responder", roles="clinician")
    sub = await bus.subscribe(">")
    await bus.flush()
    print("ready", flush=True)
    while True:
        try:
            async for message in sub:
                # JetStream's API ($JS.API.>, requests to the server: stream info, pulls)
                # is the server's to answer; an echo there would race its reply.
                if message.reply_to and not message.subject.startswith("$JS."):
                    await message.respond(message.data)
        except Exception as e:  # noqa: BLE001 - a lag notice or a refused reply: keep answering
            print(f"responder: {e!r}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
