//! The switch of [`crate::otel`] and the current span's context, read where messages are
//! built (envelope.rs): apart from otel.rs, which reads messages, so neither file needs
//! the other both ways.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use opentelemetry::trace::TraceContextExt;
use opentelemetry::{global, Context};

static INSTRUMENTED: AtomicBool = AtomicBool::new(false);

/// From now on every message built in this process inside an active span (a publish, a
/// request, a reply, a durable publish) carries that span's context, unless it was given
/// a `traceparent` of its own.
pub fn instrument() {
    INSTRUMENTED.store(true, Relaxed);
}

/// Stops what [`instrument`] started.
pub fn uninstrument() {
    INSTRUMENTED.store(false, Relaxed);
}

/// The current span's context as `(traceparent, tracestate)`, when [`instrument`] is on
/// and a valid span is current: what a message built now carries.
pub(crate) fn current() -> Option<(String, Option<String>)> {
    if !INSTRUMENTED.load(Relaxed) {
        return None;
    }
    let cx = Context::current();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    global::get_text_map_propagator(|propagator| propagator.inject_context(&cx, &mut carrier));
    let traceparent = carrier.remove("traceparent")?;
    let tracestate = carrier.remove("tracestate").filter(|s| !s.is_empty());
    Some((traceparent, tracestate))
}
