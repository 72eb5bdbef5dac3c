"""OpenTelemetry across a NATS hop: a publish inside a span carries its context, and the
consumer's `process` span is its child, as the SDK's in-memory exporter records them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import busbar
import busbar.otel
from nats_server import NatsServer

EXPORTER = InMemorySpanExporter()
PROVIDER = TracerProvider()
PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))
trace.set_tracer_provider(PROVIDER)


@pytest.fixture
def instrumented() -> Iterator[None]:
    EXPORTER.clear()
    busbar.otel.instrument()
    yield None
    busbar.otel.uninstrument()


async def test_a_trace_crosses_publish_nats_and_process(
    nats_server: NatsServer, instrumented: None
) -> None:
    producer = await busbar.connect(backend="nats", nats_url=nats_server.url)
    consumer = await busbar.connect(backend="nats", nats_url=nats_server.url)
    sub = await consumer.subscribe("otel.*")
    await consumer.flush()
    tracer = trace.get_tracer("checkout")
    with tracer.start_as_current_span("checkout") as checkout:
        await producer.publish("otel.created", b"{}", correlation_id="order-7")
    await producer.publish("otel.outside", b"{}")
    await producer.flush()

    msg = await asyncio.wait_for(sub.__anext__(), 5)
    assert msg.traceparent is not None
    with busbar.otel.process(msg):
        pass
    outside = await asyncio.wait_for(sub.__anext__(), 5)
    assert outside.traceparent is None
    await producer.close()
    await consumer.close()

    spans = {s.name: s for s in EXPORTER.get_finished_spans()}
    process = spans["process otel.created"]
    assert process.kind == SpanKind.CONSUMER
    assert process.context.trace_id == checkout.get_span_context().trace_id
    assert process.parent is not None
    assert process.parent.span_id == checkout.get_span_context().span_id
    assert process.attributes is not None
    assert process.attributes["messaging.operation.type"] == "process"
    assert process.attributes["messaging.message.conversation_id"] == "order-7"


async def test_without_instrument_nothing_is_carried() -> None:
    bus = await busbar.connect()
    sub = await bus.subscribe("plain")
    with trace.get_tracer("t").start_as_current_span("s"):
        await bus.publish("plain", b"x")
    msg = await asyncio.wait_for(sub.__anext__(), 5)
    assert msg.traceparent is None
    await bus.close()
