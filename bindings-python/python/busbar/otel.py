"""OpenTelemetry traces across busbar (needs the `opentelemetry-api` package).

    import busbar.otel
    busbar.otel.instrument()          # publishes and requests inside a span carry its context
    async for msg in sub:
        with busbar.otel.process(msg):  # the consumer's span, a child of the producer's
            ...

The context travels as W3C Trace Context in the message's `traceparent` and `tracestate`
(the CloudEvents distributed-tracing extension), so a producer in any language and a
consumer in any other share one trace. Without `instrument()` busbar never imports
OpenTelemetry and a publish does no tracing work.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind

from . import _busbar

__all__ = ["context_of", "instrument", "process", "uninstrument"]


def _current() -> tuple[str, str | None] | None:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    traceparent = carrier.get("traceparent")
    if traceparent is None:
        return None
    return traceparent, carrier.get("tracestate")


def instrument() -> None:
    """Every publish and request made inside an active span carries that span's context
    (unless given a `traceparent` of its own)."""
    _busbar._set_trace_hook(_current)


def uninstrument() -> None:
    """Stops what `instrument()` started."""
    _busbar._set_trace_hook(None)


def context_of(msg: _busbar.Message) -> Context:
    """The context whose parent is `msg`'s producer span."""
    carrier: dict[str, str] = {}
    if msg.traceparent is not None:
        carrier["traceparent"] = msg.traceparent
    if msg.tracestate is not None:
        carrier["tracestate"] = msg.tracestate
    return propagate.extract(carrier)


@contextmanager
def process(msg: _busbar.Message, tracer: trace.Tracer | None = None) -> Iterator[Span]:
    """The `process <subject>` span of `msg` (kind CONSUMER, messaging semantic conventions),
    a child of the producer's span, current for the `with` block."""
    tracer = tracer or trace.get_tracer("busbar")
    attributes: dict[str, str | int] = {
        "messaging.system": "busbar",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": msg.subject,
        "messaging.message.id": msg.id,
        "messaging.message.body.size": len(msg.data),
    }
    if msg.correlation_id is not None:
        attributes["messaging.message.conversation_id"] = msg.correlation_id
    with tracer.start_as_current_span(
        f"process {msg.subject}",
        context=context_of(msg),
        kind=SpanKind.CONSUMER,
        attributes=attributes,
    ) as span:
        yield span
