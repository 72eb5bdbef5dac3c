"""The Python participant of the cross-language trace test (tests/cross/trace.py drives it).

    trace.py produce URL SUBJECT   # publishes inside a span; prints its trace and span ids
    trace.py consume URL SUBJECT   # prints "ready", then the ids of one message's process span

Needs opentelemetry-sdk (scripts/test-python.sh installs it into .venv-python).
"""

from __future__ import annotations

import asyncio
import json
import sys

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import busbar
import busbar.otel

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
tracer = provider.get_tracer("busbar-cross")


async def produce(url: str, subject: str) -> None:
    busbar.otel.instrument()
    async with await busbar.connect(url) as bus:
        with tracer.start_as_current_span("produce") as span:
            await bus.publish(subject, b"traced")
        await bus.flush()
    ids = span.get_span_context()
    print(json.dumps({"trace_id": f"{ids.trace_id:032x}", "span_id": f"{ids.span_id:016x}"}))


async def consume(url: str, subject: str) -> None:
    async with await busbar.connect(url) as bus:
        sub = await bus.subscribe(subject)
        await bus.flush()
        print("ready", flush=True)
        msg = await asyncio.wait_for(sub.__anext__(), 30)
        with busbar.otel.process(msg, tracer):
            pass
    (span,) = exporter.get_finished_spans()
    ids = span.get_span_context()
    assert ids is not None
    parent = span.parent
    print(
        json.dumps(
            {
                "trace_id": f"{ids.trace_id:032x}",
                "span_id": f"{ids.span_id:016x}",
                "parent_span_id": None if parent is None else f"{parent.span_id:016x}",
                "name": span.name,
            }
        )
    )


if __name__ == "__main__":
    role, url, subject = sys.argv[1:4]
    asyncio.run(produce(url, subject) if role == "produce" else consume(url, subject))
