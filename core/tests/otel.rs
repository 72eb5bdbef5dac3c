//! OpenTelemetry traces across a NATS hop (feature `otel`): the SDK's in-memory exporter
//! shows one trace from a producer span through a private nats-server to the consumer's
//! `process` span, and back through a reply. One test function: `instrument()` is a
//! process-wide switch.

use std::time::Duration;

use busbar::{Payload, PublishOptions};
use opentelemetry::context::FutureExt;
use opentelemetry::trace::{Span, SpanKind, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{global, Context, Value};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};

#[path = "support/nats_server.rs"]
mod nats_server;

fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

fn finished(exporter: &InMemorySpanExporter, name: &str) -> SpanData {
    let spans = exporter.get_finished_spans().unwrap();
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| {
            panic!(
                "no finished span {name:?} among {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        })
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_crosses_publish_nats_and_process_and_comes_back_in_the_reply() {
    let server = nats_server::NatsServer::start_async().await;
    let config = server.config();
    let bus = busbar::connect(config).await.unwrap();
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let tracer = provider.tracer("busbar-test");
    global::set_text_map_propagator(TraceContextPropagator::new());

    // Not instrumented: a publish inside a span carries no context.
    let mut sub = bus.subscribe("orders.>").await.unwrap();
    let quiet = Context::current_with_span(tracer.start("quiet"));
    bus.publish("orders.quiet", "q".into())
        .with_context(quiet.clone())
        .await
        .unwrap();
    let msg = sub.next().await.unwrap().unwrap();
    assert_eq!((msg.traceparent(), msg.tracestate()), (None, None));

    busbar::otel::instrument();

    // Outside any span: still nothing.
    bus.publish("orders.none", "n".into()).await.unwrap();
    let msg = sub.next().await.unwrap().unwrap();
    assert_eq!(msg.traceparent(), None);

    // The fast path (`publish`) and the option path (`publish_with`, correlation id) inside
    // the producer's span: both carry it, through NATS, and the consumer's process span is
    // its child.
    let checkout = tracer.start("checkout");
    let checkout_ids = checkout.span_context().clone();
    let producer = Context::current_with_span(checkout);
    bus.publish("orders.eu.created", "x".into())
        .with_context(producer.clone())
        .await
        .unwrap();
    let options = PublishOptions::new().correlation_id("corr-7");
    bus.publish_with("orders.eu.paid", Payload::bytes("yy"), options)
        .with_context(producer.clone())
        .await
        .unwrap();
    for (subject, correlation) in [("orders.eu.created", None), ("orders.eu.paid", Some("corr-7"))] {
        let msg = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(msg.subject(), subject);
        let traceparent = msg.traceparent().expect("the producer's context");
        assert_eq!(
            traceparent,
            format!("00-{}-{}-01", checkout_ids.trace_id(), checkout_ids.span_id())
        );
        let span = busbar::otel::process_span(&tracer, &msg);
        drop(span); // ends it
        let process = finished(&exporter, &format!("process {subject}"));
        assert_eq!(process.span_context.trace_id(), checkout_ids.trace_id());
        assert_eq!(process.parent_span_id, checkout_ids.span_id());
        assert_eq!(process.span_kind, SpanKind::Consumer);
        assert_eq!(
            attribute(&process, "messaging.system"),
            Some(&Value::from("busbar"))
        );
        assert_eq!(
            attribute(&process, "messaging.operation.type"),
            Some(&Value::from("process"))
        );
        assert_eq!(
            attribute(&process, "messaging.destination.name"),
            Some(&Value::from(subject))
        );
        assert_eq!(
            attribute(&process, "messaging.message.id"),
            Some(&Value::from(msg.id().to_owned()))
        );
        assert_eq!(
            attribute(&process, "messaging.message.body.size"),
            Some(&Value::from(msg.data().len() as i64))
        );
        assert_eq!(
            attribute(&process, "messaging.message.conversation_id"),
            correlation.map(Value::from).as_ref()
        );
    }

    // A traceparent given by the caller wins over the current span.
    let own = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let options = PublishOptions::new().traceparent(own).tracestate("k=v");
    bus.publish_with("orders.own", Payload::bytes("o"), options)
        .with_context(producer.clone())
        .await
        .unwrap();
    let msg = sub.next().await.unwrap().unwrap();
    assert_eq!((msg.traceparent(), msg.tracestate()), (Some(own), Some("k=v")));

    // Request/reply both ways: the request carries the requester's span; the responder
    // answers inside its process span, so the reply carries that span, a child of the
    // requester's.
    let mut responder = bus.subscribe("prices.get").await.unwrap();
    let responder_tracer = tracer.clone();
    let answered = tokio::spawn(async move {
        let request = responder.next().await.unwrap().unwrap();
        let span = busbar::otel::process_span(&responder_tracer, &request);
        let cx = Context::current_with_span(span);
        let reply = {
            let _inside = cx.clone().attach();
            PublishOptions::new()
                .reply(&request, Payload::bytes("42"))
                .unwrap()
        };
        request.respond_message(reply).await.unwrap();
        cx.span().end();
        request.traceparent().map(str::to_owned)
    });
    let ask = tracer.start("ask");
    let ask_ids = ask.span_context().clone();
    let requester = Context::current_with_span(ask);
    let reply = bus
        .request("prices.get", "?".into(), Duration::from_secs(5))
        .with_context(requester.clone())
        .await
        .unwrap();
    let request_traceparent = answered
        .await
        .unwrap()
        .expect("the request carried the requester's span");
    assert_eq!(
        request_traceparent,
        format!("00-{}-{}-01", ask_ids.trace_id(), ask_ids.span_id())
    );
    let process = finished(&exporter, "process prices.get");
    assert_eq!(process.parent_span_id, ask_ids.span_id());
    assert_eq!(
        reply.traceparent(),
        Some(format!("00-{}-{}-01", ask_ids.trace_id(), process.span_context.span_id()).as_str()),
        "the reply carries the responder's process span"
    );

    // A copy of an existing message (a masked delivery, a dead letter) keeps the trace it
    // has, even when made inside a span; a new message made there carries the span.
    busbar::otel::uninstrument();
    let untraced = busbar::Message::builder("orders.copy").build().unwrap();
    busbar::otel::instrument();
    let (copy, fresh) = {
        let _inside = producer.clone().attach();
        (
            untraced.to_builder().build().unwrap(),
            busbar::Message::builder("orders.fresh").build().unwrap(),
        )
    };
    assert_eq!(copy.traceparent(), None);
    assert!(fresh.traceparent().is_some());

    // A hostile or broken traceparent on a delivery gives a root span, not a panic.
    let bad = busbar::Message::builder("orders.bad")
        .traceparent("00-zz-yy-01")
        .build()
        .unwrap();
    drop(busbar::otel::process_span(&tracer, &bad));
    let orphan = finished(&exporter, "process orders.bad");
    assert_eq!(orphan.parent_span_id, opentelemetry::trace::SpanId::INVALID);

    busbar::otel::uninstrument();
    bus.publish("orders.after", "a".into())
        .with_context(producer.clone())
        .await
        .unwrap();
    let msg = sub.next().await.unwrap().unwrap();
    assert_eq!(msg.traceparent(), None);

    bus.close().await.unwrap();
    provider.shutdown().unwrap();
}
