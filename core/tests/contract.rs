//! The behaviour every backend must show (docs/design.md §2–§5), written once against
//! `Arc<dyn EventBus>`. `contract_suite!` instantiates it for a backend factory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use busbar::{Config, Error, EventBus, Message, Subscription};

const WAIT: Duration = Duration::from_secs(5);

async fn next_msg(sub: &mut Subscription) -> Message {
    match tokio::time::timeout(WAIT, sub.next()).await {
        Ok(Some(Ok(m))) => m,
        other => panic!("expected a message on {:?}, got {other:?}", sub.pattern()),
    }
}

/// Asserts nothing more arrives on `sub` within a short grace period.
async fn assert_quiet(sub: &mut Subscription) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(100), sub.next()).await {
        panic!("expected nothing on {:?}, got {item:?}", sub.pattern());
    }
}

pub async fn wildcard_fan_out(bus: Arc<dyn EventBus>) {
    let patterns = [
        "orders.>",
        "orders.*",
        "orders.eu",
        "*.eu",
        ">",
        "orders.*.paid",
        "invoices.>",
    ];
    let mut subs = Vec::new();
    for p in patterns {
        subs.push(bus.subscribe(p).await.unwrap());
    }
    for subject in ["orders.eu", "orders.eu.paid", "orders"] {
        bus.publish(subject, subject.into()).await.unwrap();
    }
    bus.flush().await.unwrap();
    for (pattern, sub) in patterns.iter().zip(subs.iter_mut()) {
        for subject in ["orders.eu", "orders.eu.paid", "orders"] {
            if busbar::subject_matches(pattern, subject) {
                let m = next_msg(sub).await;
                assert_eq!(m.subject(), subject, "pattern {pattern}");
                assert_eq!(&m.data()[..], subject.as_bytes());
            }
        }
        assert_quiet(sub).await;
    }
}

pub async fn queue_group_delivers_each_message_once(bus: Arc<dyn EventBus>) {
    let mut members = Vec::new();
    for _ in 0..3 {
        members.push(bus.queue_subscribe("jobs.*", "workers").await.unwrap());
    }
    let mut other_group = bus.queue_subscribe("jobs.>", "auditors").await.unwrap();
    let mut watcher = bus.subscribe("jobs.*").await.unwrap();
    const N: usize = 60;
    // A subject of its own per job: on Kafka one subject's messages go to one member (the
    // one holding its partition), so the members are used only across subjects.
    for i in 0..N {
        bus.publish(&format!("jobs.r{i}"), i.to_string().into())
            .await
            .unwrap();
    }
    bus.flush().await.unwrap();
    // The members are read in turn until every job came (or WAIT passed): a member's
    // share may come later than another's (on Kafka, after its group's rebalance).
    let mut seen = vec![0u32; N];
    let mut per_member = vec![0usize; members.len()];
    let mut total = 0;
    let deadline = Instant::now() + WAIT;
    while total < N && Instant::now() < deadline {
        for (k, m) in members.iter_mut().enumerate() {
            while let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_millis(20), m.next()).await {
                seen[std::str::from_utf8(msg.data()).unwrap().parse::<usize>().unwrap()] += 1;
                per_member[k] += 1;
                total += 1;
            }
        }
    }
    // Nothing more comes: no job twice.
    for m in members.iter_mut() {
        assert_quiet(m).await;
    }
    assert!(seen.iter().all(|&n| n == 1), "each job exactly once: {seen:?}");
    assert!(
        per_member.iter().all(|&n| n > 0),
        "every member used: {per_member:?}"
    );
    for _ in 0..N {
        next_msg(&mut other_group).await;
        next_msg(&mut watcher).await;
    }
    assert_quiet(&mut other_group).await;
    assert_quiet(&mut watcher).await;
}

pub async fn request_reply_correlates(bus: Arc<dyn EventBus>) {
    let responder = bus.subscribe("math.double").await.unwrap();
    let server = tokio::spawn(busbar::serve(responder, |req| async move {
        let n: u64 = std::str::from_utf8(req.data()).unwrap().parse().unwrap();
        (n * 2).to_string().into()
    }));
    for n in [1u64, 21, 1000] {
        let request = bus.message("math.double").data(n.to_string()).build().unwrap();
        let id = request.id().to_owned();
        let reply = bus.request_message(request, WAIT).await.unwrap();
        assert_eq!(std::str::from_utf8(reply.data()).unwrap(), (n * 2).to_string());
        assert_eq!(
            reply.correlation_id(),
            Some(id.as_str()),
            "reply echoes the request id"
        );
        assert!(
            reply.subject().starts_with("_INBOX."),
            "reply went to an inbox: {}",
            reply.subject()
        );
    }
    // A caller-set correlation id is kept and echoed.
    let request = bus
        .message("math.double")
        .data("2")
        .correlation_id("order-77")
        .build()
        .unwrap();
    let reply = bus.request_message(request, WAIT).await.unwrap();
    assert_eq!(reply.correlation_id(), Some("order-77"));
    bus.close().await.unwrap();
    assert_eq!(server.await.unwrap().unwrap(), 4);
}

pub async fn request_without_responders_fails_at_once(bus: Arc<dyn EventBus>) {
    let started = Instant::now();
    let err = bus
        .request("nobody.home", "hi".into(), Duration::from_secs(10))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "no_responders", "{err}");
    assert!(err.to_string().contains("nobody.home"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "failed at once, not after the timeout"
    );
}

pub async fn request_times_out_and_late_reply_is_dropped(bus: Arc<dyn EventBus>) {
    let mut slow = bus.subscribe("slow.service").await.unwrap();
    let started = Instant::now();
    let requester = {
        let bus = bus.clone();
        tokio::spawn(async move {
            bus.request("slow.service", "ping".into(), Duration::from_millis(150))
                .await
        })
    };
    let request = next_msg(&mut slow).await;
    let err = requester.await.unwrap().unwrap_err();
    assert_eq!(err.code(), "timeout", "{err}");
    assert!(started.elapsed() >= Duration::from_millis(150));
    let before = bus.stats().late_replies;
    request.respond("too late").await.unwrap();
    bus.flush().await.unwrap();
    let deadline = Instant::now() + WAIT;
    while bus.stats().late_replies == before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(bus.stats().late_replies, before + 1, "the late reply is counted");
}

pub async fn payload_limit_names_both_sizes(bus: Arc<dyn EventBus>) {
    // Built with max_payload = 1024.
    let mut sub = bus.subscribe("blobs").await.unwrap();
    bus.publish("blobs", vec![7u8; 1024].into()).await.unwrap();
    assert_eq!(next_msg(&mut sub).await.data().len(), 1024);
    let err = bus.publish("blobs", vec![7u8; 1025].into()).await.unwrap_err();
    assert_eq!(err.code(), "payload_too_large");
    let text = err.to_string();
    assert!(text.contains("1025") && text.contains("1024"), "{text}");
    let err = bus
        .request("blobs", vec![0u8; 4096].into(), WAIT)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "payload_too_large");
    assert_quiet(&mut sub).await;
}

/// A requester takes only the reply carrying its request's correlation id (docs/design.md
/// §5): another client's message on the same inbox subject, with no correlation id or a
/// wrong one, is refused and counted in `rejected_replies`.
pub async fn forged_replies_are_refused_and_counted(bus: Arc<dyn EventBus>) {
    let mut responder = bus.subscribe("svc.forged").await.unwrap();
    let requester = {
        let bus = bus.clone();
        tokio::spawn(async move { bus.request("svc.forged", "q".into(), WAIT).await })
    };
    let request = next_msg(&mut responder).await;
    let inbox = request.reply_to().unwrap().to_owned();
    let before = bus.stats();
    bus.publish(&inbox, "forged: no correlation id".into())
        .await
        .unwrap();
    let wrong = bus
        .message(&inbox)
        .data("forged: wrong correlation id")
        .correlation_id("not-the-request")
        .build()
        .unwrap();
    bus.publish_message(wrong).await.unwrap();
    bus.flush().await.unwrap();
    let deadline = Instant::now() + WAIT;
    while bus.stats().rejected_replies < before.rejected_replies + 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(bus.stats().rejected_replies, before.rejected_replies + 2);
    request.respond("real").await.unwrap();
    let reply = tokio::time::timeout(WAIT, requester)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(reply.data(), "real");
    assert_eq!(reply.correlation_id(), Some(request.correlation_id().unwrap()));
    assert_eq!(bus.stats().late_replies, before.late_replies);

    // Each request waits on its own random inbox subject, not a counter's next value.
    let mut inboxes = Vec::new();
    for _ in 0..2 {
        let requester = {
            let bus = bus.clone();
            tokio::spawn(async move { bus.request("svc.forged", "q".into(), WAIT).await })
        };
        let request = next_msg(&mut responder).await;
        inboxes.push(request.reply_to().unwrap().to_owned());
        request.respond("ok").await.unwrap();
        requester.await.unwrap().unwrap();
    }
    let tokens: Vec<&str> = inboxes.iter().map(|s| s.rsplit('.').next().unwrap()).collect();
    assert_ne!(tokens[0], tokens[1]);
    for token in tokens {
        assert!(
            token.len() >= 32 && token.bytes().all(|c| c.is_ascii_hexdigit()),
            "{inboxes:?}"
        );
    }
}

pub async fn ordering_per_publisher(bus: Arc<dyn EventBus>) {
    let mut sub = bus.subscribe("seq.*").await.unwrap();
    const N: usize = 2000;
    let mut publishers = Vec::new();
    for p in 0..2 {
        let bus = bus.clone();
        publishers.push(tokio::spawn(async move {
            for i in 0..N {
                bus.publish(&format!("seq.p{p}"), i.to_string().into())
                    .await
                    .unwrap();
            }
        }));
    }
    let mut next_expected = [0usize; 2];
    for _ in 0..2 * N {
        let m = next_msg(&mut sub).await;
        let p = if m.subject() == "seq.p0" { 0 } else { 1 };
        let i: usize = std::str::from_utf8(m.data()).unwrap().parse().unwrap();
        assert_eq!(i, next_expected[p], "publisher {p} out of order");
        next_expected[p] += 1;
    }
    for p in publishers {
        p.await.unwrap();
    }
}

pub async fn headers_and_attributes_arrive(bus: Arc<dyn EventBus>) {
    let mut sub = bus.subscribe("patients.>").await.unwrap();
    let sent = bus
        .message("patients.admitted")
        .data(&b"{\"bed\":4}"[..])
        .event_type("com.example.admitted")
        .content_type("application/json")
        .traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .classification("phi")
        .header("tenant", "st-marys")
        // Not ASCII: the NATS header block is then checked as UTF-8 (vendor/async-nats).
        .header("ward", "Zürich — 東京 🏥")
        .build()
        .unwrap();
    bus.publish_message(sent.clone()).await.unwrap();
    let got = next_msg(&mut sub).await;
    assert_eq!(got.header("ward"), Some("Zürich — 東京 🏥"));
    assert_eq!(got.id(), sent.id());
    assert_eq!(got.event_type(), "com.example.admitted");
    assert_eq!(got.content_type(), Some("application/json"));
    assert_eq!(got.traceparent(), sent.traceparent());
    assert_eq!(got.classification(), Some("phi"));
    assert_eq!(got.header("tenant"), Some("st-marys"));
    assert_eq!(got.data(), sent.data());
    let err = got.respond("x").await.unwrap_err();
    assert_eq!(err.code(), "invalid_argument", "not a request: {err}");
}

pub async fn bad_input_is_refused(bus: Arc<dyn EventBus>) {
    for subject in ["", "a..b", "a.*", "a.>", "a b", "a\tb", "tab\n"] {
        let err = bus.publish(subject, "x".into()).await.unwrap_err();
        assert_eq!(err.code(), "invalid_subject", "publish {subject:?}: {err}");
        let err = bus.request(subject, "x".into(), WAIT).await.unwrap_err();
        assert_eq!(err.code(), "invalid_subject", "request {subject:?}: {err}");
    }
    for pattern in ["", "a.>.b", ">.a", "a..*", "a b"] {
        let err = bus.subscribe(pattern).await.unwrap_err();
        assert_eq!(err.code(), "invalid_subject", "subscribe {pattern:?}: {err}");
        assert!(
            err.to_string().contains(&format!("{pattern:?}")),
            "names the pattern: {err}"
        );
    }
    for group in ["", "a b", "x\n"] {
        let err = bus.queue_subscribe("a", group).await.unwrap_err();
        assert_eq!(err.code(), "invalid_argument", "group {group:?}: {err}");
    }
    let err = bus.request("a", "x".into(), Duration::ZERO).await.unwrap_err();
    assert_eq!(err.code(), "invalid_argument");
}

pub async fn unsubscribe_stops_delivery(bus: Arc<dyn EventBus>) {
    let mut sub = bus.subscribe("news.*").await.unwrap();
    let mut other = bus.subscribe("news.*").await.unwrap();
    bus.publish("news.a", "1".into()).await.unwrap();
    bus.flush().await.unwrap();
    next_msg(&mut other).await;
    sub.unsubscribe().await.unwrap();
    bus.publish("news.b", "2".into()).await.unwrap();
    bus.flush().await.unwrap();
    assert_eq!(next_msg(&mut other).await.subject(), "news.b");
    let end = tokio::time::timeout(WAIT, sub.next()).await.expect("stream ends");
    assert!(end.is_none(), "an unsubscribed stream ends at once: {end:?}");
}

pub async fn drain_yields_buffered_then_ends(bus: Arc<dyn EventBus>) {
    let mut sub = bus.subscribe("ticks").await.unwrap();
    for i in 0..5 {
        bus.publish("ticks", i.to_string().into()).await.unwrap();
    }
    sub.drain().await.unwrap();
    bus.publish("ticks", "after".into()).await.unwrap();
    let mut got = Vec::new();
    while let Some(item) = tokio::time::timeout(WAIT, sub.next()).await.expect("drain ends") {
        got.push(String::from_utf8(item.unwrap().data().to_vec()).unwrap());
    }
    assert_eq!(got, ["0", "1", "2", "3", "4"]);
}

pub async fn close_ends_everything(bus: Arc<dyn EventBus>) {
    let mut sub = bus.subscribe("x").await.unwrap();
    let _listener = bus.subscribe("never.answers").await.unwrap();
    let pending = {
        let bus = bus.clone();
        tokio::spawn(async move {
            bus.request("never.answers", "?".into(), Duration::from_secs(30))
                .await
        })
    };
    bus.publish("x", "before close".into()).await.unwrap();
    bus.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    bus.close().await.unwrap();
    let err = tokio::time::timeout(WAIT, pending)
        .await
        .expect("request ends")
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), "closed", "{err}");
    assert_eq!(next_msg(&mut sub).await.data(), "before close");
    assert!(tokio::time::timeout(WAIT, sub.next()).await.unwrap().is_none());
    for err in [
        bus.publish("x", "y".into()).await.unwrap_err(),
        bus.subscribe("x").await.unwrap_err(),
        bus.request("x", "y".into(), WAIT).await.unwrap_err(),
        bus.flush().await.unwrap_err(),
    ] {
        assert!(matches!(err, Error::Closed(_)), "{err}");
    }
    bus.close().await.expect("closing twice is harmless");
}

/// On Kafka nothing tells who reads a subject: a request nobody answers fails with
/// `timeout` after its timeout, not `no_responders` (docs/design.md §5).
pub async fn request_without_responders_times_out(bus: Arc<dyn EventBus>) {
    let started = Instant::now();
    let err = bus
        .request("nobody.home", "hi".into(), Duration::from_millis(300))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "timeout", "{err}");
    assert!(err.to_string().contains("nobody.home"), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(300));
}

/// A backend without durable streams refuses every durable call with `unsupported`,
/// naming the call and the backend, and loses nothing else: the bus still works.
pub async fn durable_calls_are_unsupported(bus: Arc<dyn EventBus>) {
    let backend = bus.backend().as_str();
    let stream = busbar::StreamConfig::new("orders", ["orders.>"]);
    let msg = bus.message("orders.x").data("1").build().unwrap();
    let consumer = busbar::ConsumerConfig::new("orders", "billing");
    let errors = [
        ("declare_stream", bus.declare_stream(stream).await.map(drop)),
        ("stream_info", bus.stream_info("orders").await.map(drop)),
        ("publish_durable", bus.publish_durable(msg).await.map(drop)),
        (
            "durable_subscribe",
            bus.durable_subscribe(consumer).await.map(drop),
        ),
        ("list_streams", bus.list_streams().await.map(drop)),
        ("delete_stream", bus.delete_stream("orders").await),
        ("list_consumers", bus.list_consumers("orders").await.map(drop)),
        (
            "consumer_info",
            bus.consumer_info("orders", "billing").await.map(drop),
        ),
        ("delete_consumer", bus.delete_consumer("orders", "billing").await),
    ];
    for (call, result) in errors {
        let err = result.expect_err(call);
        assert_eq!(err.code(), "unsupported", "{call}: {err}");
        let text = err.to_string();
        assert!(text.contains(call) && text.contains(backend), "{call}: {text}");
    }
    let mut sub = bus.subscribe("orders.>").await.unwrap();
    bus.publish("orders.x", "still works".into()).await.unwrap();
    assert_eq!(next_msg(&mut sub).await.data(), "still works");
}

#[path = "contract/durable.rs"]
mod durable;
use durable::*;

/// Instantiates every contract test for one backend. `$factory` is an async fn taking a
/// [`Config`] (already holding the test's limits) and returning the bus and whatever
/// must live as long as it (a private server).
macro_rules! contract_suite {
    ($backend:ident, $factory:path) => {
        mod $backend {
            use super::*;
            contract_suite!(@core $factory);
            contract_suite!(@tests $factory;
                durable_publish_is_acked_and_deduplicated, ack_nak_and_backoff,
                unacked_messages_come_back_after_a_crash, dead_letters_after_max_deliver,
                replay_from_sequence_time_and_start, shared_consumer_and_retention,
                streams_and_consumers_are_listed_and_deleted);
        }
    };
    (@core $factory:path) => {
        contract_suite!(@tests $factory;
            wildcard_fan_out, queue_group_delivers_each_message_once, request_reply_correlates,
            request_without_responders_fails_at_once, request_times_out_and_late_reply_is_dropped,
            forged_replies_are_refused_and_counted,
            ordering_per_publisher, headers_and_attributes_arrive, bad_input_is_refused,
            unsubscribe_stops_delivery, drain_yields_buffered_then_ends, close_ends_everything);
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn payload_limit_names_both_sizes() {
            let (bus, _keep) = $factory(Config::default().with_max_payload(1024)).await;
            super::payload_limit_names_both_sizes(bus).await;
        }
    };
    (@tests $factory:path; $($name:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (bus, _keep) = $factory(Config::default()).await;
            super::$name(bus).await;
        }
    )*};
}

async fn memory_bus(config: Config) -> (Arc<dyn EventBus>, ()) {
    (busbar::connect(config).await.expect("memory bus"), ())
}

contract_suite!(memory, memory_bus);

#[path = "support/nats_server.rs"]
mod nats_server;

/// A bus on a private nats-server (JetStream on, temporary store) started for this test.
async fn nats_bus(config: Config) -> (Arc<dyn EventBus>, nats_server::NatsServer) {
    let server = tokio::task::spawn_blocking(nats_server::NatsServer::start)
        .await
        .unwrap();
    let config = config
        .with_backend(busbar::Backend::Nats)
        .with_nats_url(server.url());
    let bus = busbar::connect(config)
        .await
        .expect("connect to the test's nats-server");
    (bus, server)
}

contract_suite!(nats, nats_bus);

#[path = "support/rabbitmq.rs"]
mod rabbitmq_broker;

/// A bus on the shared RabbitMQ broker, on a topic exchange of this test's own; the guard
/// deletes the exchange's durable journal when the test ends.
#[cfg(feature = "rabbitmq")]
async fn rabbitmq_bus(config: Config) -> (Arc<dyn EventBus>, rabbitmq_broker::Journal) {
    let exchange = rabbitmq_broker::exchange();
    let bus = rabbitmq_broker::connect(config, &exchange).await;
    (bus, rabbitmq_broker::Journal(exchange))
}

#[cfg(feature = "rabbitmq")]
contract_suite!(rabbitmq, rabbitmq_bus);

#[path = "support/tansu.rs"]
mod tansu;

/// A bus on a private tansu broker (memory storage) started for this test.
#[cfg(feature = "kafka")]
async fn kafka_bus(config: Config) -> (Arc<dyn EventBus>, tansu::Tansu) {
    let broker = tokio::task::spawn_blocking(tansu::Tansu::start).await.unwrap();
    let mut config = config.with_backend(busbar::Backend::Kafka);
    config.set("kafka_brokers", &broker.brokers()).unwrap();
    let bus = busbar::connect(config)
        .await
        .expect("connect to the test's tansu broker");
    (bus, broker)
}

/// The contract on Kafka: everything but `no_responders` (a timeout instead) and durable
/// streams (refused with `unsupported`).
#[cfg(feature = "kafka")]
mod kafka {
    use super::*;
    contract_suite!(@tests kafka_bus;
        wildcard_fan_out, request_reply_correlates,
        request_without_responders_times_out, request_times_out_and_late_reply_is_dropped,
        forged_replies_are_refused_and_counted,
        ordering_per_publisher, headers_and_attributes_arrive, bad_input_is_refused,
        unsubscribe_stops_delivery, drain_yields_buffered_then_ends, close_ends_everything,
        durable_calls_are_unsupported);
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn payload_limit_names_both_sizes() {
        let (bus, _keep) = kafka_bus(Config::default().with_max_payload(1024)).await;
        super::payload_limit_names_both_sizes(bus).await;
    }

    /// With `kafka_partition_by = subject`, a queue group fed by one publisher spreads
    /// over the subjects' partitions (by publisher, it would be one member's).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queue_group_delivers_each_message_once() {
        let mut config = Config::default();
        config.set("kafka_partition_by", "subject").unwrap();
        let (bus, _keep) = kafka_bus(config).await;
        super::queue_group_delivers_each_message_once(bus).await;
    }
}
