//! OpenTelemetry traces across busbar (cargo feature `otel`; docs/guide/observability.md):
//! Rust's side of what Python's `busbar.otel` and Node's `busbar.otel` do.
//!
//! ```ignore
//! busbar::otel::instrument();            // publishes and requests inside a span carry it
//! bus.publish("orders.eu", data).with_context(cx).await?;
//! let msg = sub.next().await.unwrap()?;
//! let span = busbar::otel::process_span(&tracer, &msg); // a child of the producer's span
//! ```
//!
//! The context travels as W3C Trace Context in the message's `traceparent` and
//! `tracestate` (the CloudEvents distributed-tracing extension, docs/design.md §3), written
//! and read through the global text-map propagator the application installs (usually the
//! SDK's `TraceContextPropagator`), so a producer in any language and a consumer in any
//! other share one trace. busbar depends on the OpenTelemetry API only; the application
//! chooses the SDK and exporter. Without [`instrument`] a publish does one atomic load and
//! no tracing work.

use opentelemetry::trace::{SpanKind, Tracer};
use opentelemetry::{global, Context, KeyValue};
use std::collections::HashMap;

use crate::envelope::Message;

pub use crate::otel_context::{instrument, uninstrument};

#[cfg(feature = "otel-metrics")]
#[path = "otel_metrics.rs"]
pub mod metrics;

/// The context whose remote parent is `msg`'s producer span (empty when `msg` carries no
/// `traceparent`, or one the global propagator cannot read).
pub fn context_of(msg: &Message) -> Context {
    let mut carrier = HashMap::new();
    if let Some(traceparent) = msg.traceparent() {
        carrier.insert("traceparent".to_owned(), traceparent.to_owned());
    }
    if let Some(tracestate) = msg.tracestate() {
        carrier.insert("tracestate".to_owned(), tracestate.to_owned());
    }
    global::get_text_map_propagator(|propagator| propagator.extract(&carrier))
}

/// Starts the `process <subject>` span of `msg` with `tracer`: kind `Consumer`, a child
/// of the producer's span, with the OpenTelemetry messaging attributes
/// (`messaging.system` = `busbar`, `messaging.operation.type` = `process`,
/// `messaging.destination.name`, `messaging.message.id`, `messaging.message.body.size`,
/// `messaging.message.conversation_id` when the message has a correlation id). The
/// caller ends it (dropping it ends it too), or makes it current with
/// `Context::current_with_span` so a reply built inside it carries it.
pub fn process_span<T: Tracer>(tracer: &T, msg: &Message) -> T::Span {
    let mut attributes = vec![
        KeyValue::new("messaging.system", "busbar"),
        KeyValue::new("messaging.operation.type", "process"),
        KeyValue::new("messaging.operation.name", "process"),
        KeyValue::new("messaging.destination.name", msg.subject().to_owned()),
        KeyValue::new("messaging.message.id", msg.id().to_owned()),
        KeyValue::new("messaging.message.body.size", msg.data().len() as i64),
    ];
    if let Some(correlation_id) = msg.correlation_id() {
        attributes.push(KeyValue::new(
            "messaging.message.conversation_id",
            correlation_id.to_owned(),
        ));
    }
    tracer
        .span_builder(format!("process {}", msg.subject()))
        .with_kind(SpanKind::Consumer)
        .with_attributes(attributes)
        .start_with_context(tracer, &context_of(msg))
}
