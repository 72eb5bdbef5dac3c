//! Limits and hostile inputs (issue 12): deep and long subjects on both backends,
//! the payload limit with the header block counted, numeric options, lost streams.

use std::sync::Arc;
use std::time::Duration;

use busbar::{Backend, Config, EventBus};

#[cfg(feature = "nats")]
#[path = "support/nats_server.rs"]
mod nats_server;
#[cfg(feature = "nats")]
use nats_server::NatsServer;

const WAIT: Duration = Duration::from_secs(5);
const MAX_BYTES: usize = busbar::subject::MAX_SUBJECT_BYTES;
const MAX_TOKENS: usize = busbar::subject::MAX_SUBJECT_TOKENS;

fn memory() -> Arc<dyn EventBus> {
    Arc::new(busbar::InMemoryBus::new(Config::default()).unwrap())
}

#[cfg(feature = "nats")]
async fn start() -> NatsServer {
    tokio::task::spawn_blocking(NatsServer::start).await.unwrap()
}

#[cfg(feature = "nats")]
async fn nats(server: &NatsServer) -> Arc<dyn EventBus> {
    busbar::connect(
        Config::default()
            .with_backend(Backend::Nats)
            .with_nats_url(server.url()),
    )
    .await
    .unwrap()
}

fn code<T: std::fmt::Debug>(r: busbar::Result<T>) -> String {
    r.expect_err("expected an error").code().to_owned()
}

/// Deep and long subjects are refused with `invalid_subject` naming the limit, on
/// publish, request, subscribe and queue subscribe; subjects at the limits work.
async fn deep_and_long_subjects(bus: Arc<dyn EventBus>) {
    let deep = vec!["a"; 10_000].join("."); // 19,999 bytes: overflowed the trie's recursion
    let deep_pattern = format!("{}.>", vec!["*"; 300].join("."));
    let long = "x".repeat(5000); // over a NATS server's 4096-byte control line
    for (input, limit) in [
        (&deep, "2000 bytes"),
        (&deep_pattern, "256 tokens"),
        (&long, "2000 bytes"),
    ] {
        for result in [
            bus.subscribe(input).await.map(|_| ()),
            bus.queue_subscribe(input, "workers").await.map(|_| ()),
        ] {
            let err = result.unwrap_err();
            assert_eq!(err.code(), "invalid_subject", "{err}");
            assert!(err.to_string().contains(limit), "{err}");
            assert!(err.to_string().len() < 300, "the input is quoted short: {err}");
        }
    }
    for subject in [&deep, &long, &vec!["a"; MAX_TOKENS + 1].join(".")] {
        assert_eq!(code(bus.publish(subject, "x".into()).await), "invalid_subject");
        assert_eq!(
            code(bus.request(subject, "x".into(), Duration::from_millis(100)).await),
            "invalid_subject"
        );
    }
    let long_group = "g".repeat(MAX_BYTES + 1);
    assert_eq!(
        code(bus.queue_subscribe("a", &long_group).await),
        "invalid_argument"
    );

    // At the limits everything works, and the connection stays usable.
    let longest = format!("{}.{}", "p".repeat(MAX_BYTES - 4), "end");
    assert_eq!(longest.len(), MAX_BYTES);
    let deepest = vec!["d"; MAX_TOKENS].join(".");
    let group = "q".repeat(MAX_BYTES);
    let mut by_pattern = bus
        .subscribe(&format!("{}.*", "p".repeat(MAX_BYTES - 4)))
        .await
        .unwrap();
    let mut by_group = bus.queue_subscribe(&longest, &group).await.unwrap();
    let mut deep_sub = bus.subscribe(&deepest).await.unwrap();
    let mut deep_wild = bus
        .subscribe(&format!("{}.>", vec!["*"; MAX_TOKENS - 1].join(".")))
        .await
        .unwrap();
    bus.flush().await.unwrap();
    bus.publish(&longest, "long".into()).await.unwrap();
    bus.publish(&deepest, "deep".into()).await.unwrap();
    for (sub, want) in [
        (&mut by_pattern, "long"),
        (&mut by_group, "long"),
        (&mut deep_sub, "deep"),
        (&mut deep_wild, "deep"),
    ] {
        let msg = tokio::time::timeout(WAIT, sub.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(msg.data().as_ref(), want.as_bytes());
    }
    // A request whose subject and reply inbox are both long.
    let mut responder = bus.subscribe(&longest).await.unwrap();
    bus.flush().await.unwrap();
    let answer = tokio::spawn(async move {
        let req = responder.next().await.unwrap().unwrap();
        req.respond("pong").await.unwrap();
    });
    let reply = bus.request(&longest, "ping".into(), WAIT).await.unwrap();
    assert_eq!(reply.data().as_ref(), b"pong");
    answer.await.unwrap();
    let reply_to = "r".repeat(MAX_BYTES);
    let msg = bus
        .message(&longest)
        .reply_to(&reply_to)
        .data("x")
        .build()
        .unwrap();
    bus.publish_message(msg).await.unwrap();
    let mut probe = bus.subscribe("probe").await.unwrap();
    bus.flush().await.unwrap();
    bus.publish("probe", "alive".into()).await.unwrap();
    let alive = tokio::time::timeout(WAIT, probe.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(alive.data().as_ref(), b"alive");
}

#[tokio::test]
async fn deep_and_long_subjects_in_memory() {
    deep_and_long_subjects(memory()).await;
}

#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_and_long_subjects_on_nats() {
    let server = start().await;
    let bus = nats(&server).await;
    let mut events = bus.connection_events().unwrap();
    deep_and_long_subjects(bus.clone()).await;
    // The server never closed the connection.
    while let Ok(event) = events.try_recv() {
        assert!(
            !matches!(event, busbar::ConnectionEvent::Disconnected),
            "the connection dropped: {event:?}"
        );
    }
}

/// Every numeric option out of range is refused with `invalid_argument` naming it; none
/// reaches a conversion that panics or a broker that answers with an opaque error.
async fn numeric_options(bus: Arc<dyn EventBus>) {
    use busbar::{ConsumerConfig, StartAt, StreamConfig};
    let huge = Duration::from_millis(u64::MAX);
    let err = bus.request("svc", "x".into(), Duration::MAX).await.unwrap_err();
    assert_eq!(err.code(), "invalid_argument", "{err}");
    assert!(err.to_string().contains("request timeout"), "{err}");

    for (stream, what) in [
        (StreamConfig::new("S1", ["lim.>"]).max_age(huge), "max_age"),
        (
            StreamConfig::new("S1", ["lim.>"]).duplicate_window(huge),
            "duplicate_window",
        ),
        (
            StreamConfig::new("S1", ["lim.>"]).max_bytes(u64::MAX),
            "max_bytes",
        ),
        (
            StreamConfig::new("S1", ["lim.>"]).max_messages(u64::MAX),
            "max_messages",
        ),
    ] {
        let err = bus.declare_stream(stream).await.unwrap_err();
        assert_eq!(err.code(), "invalid_argument", "{err}");
        assert!(err.to_string().contains(what), "{err}");
    }
    bus.declare_stream(StreamConfig::new("S1", ["lim.>"]))
        .await
        .unwrap();
    let far = std::time::SystemTime::now() + Duration::from_secs(1000 * 365 * 86_400);
    for (consumer, what) in [
        (ConsumerConfig::new("S1", "c").ack_wait(huge), "ack_wait"),
        (
            ConsumerConfig::new("S1", "c").backoff(Duration::from_secs(1), 2.0, huge),
            "backoff cap",
        ),
        (ConsumerConfig::new("S1", "c").rate_limit(1e-300), "rate_limit"),
        (
            ConsumerConfig::new("S1", "c").start(StartAt::Sequence(u64::MAX)),
            "start sequence",
        ),
        (
            ConsumerConfig::new("S1", "c").start(StartAt::Time(far)),
            "start time",
        ),
    ] {
        let err = bus.durable_subscribe(consumer).await.unwrap_err();
        assert_eq!(err.code(), "invalid_argument", "{err}");
        assert!(err.to_string().contains(what), "{err}");
    }
    // A nak delay out of range is refused, and the message is still unsettled.
    let mut sub = bus
        .durable_subscribe(ConsumerConfig::new("S1", "c").ack_wait(Duration::from_secs(30)))
        .await
        .unwrap();
    bus.publish_durable(bus.message("lim.a").data("x").build().unwrap())
        .await
        .unwrap();
    let msg = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(msg.nak(Some(huge)).await.unwrap_err().code(), "invalid_argument");
    msg.ack().await.unwrap();
}

#[tokio::test]
async fn numeric_options_in_memory() {
    numeric_options(memory()).await;
}

#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numeric_options_on_nats() {
    let server = start().await;
    numeric_options(nats(&server).await).await;
}

#[test]
fn config_numbers_are_bounded() {
    let mut config = Config::default();
    for (key, value) in [
        ("subscription_capacity", "2305843009213693952"), // 2^61: subscribe panicked
        ("subscription_capacity", "18446744073709551615"),
        ("subscription_capacity", "16777217"),
        ("retention_days", "4294967295"),
        ("max_payload", "-1"),
        ("max_payload", "1e3"),
        ("max_payload", "NaN"),
    ] {
        let err = config.set(key, value).unwrap_err();
        assert_eq!(err.code(), "invalid_argument", "{key}={value}");
        assert!(err.to_string().contains(key), "{err}");
    }
    config.set("subscription_capacity", "16777216").unwrap();
    let err = busbar::InMemoryBus::new(Config::default().with_subscription_capacity(usize::MAX))
        .err()
        .unwrap();
    assert_eq!(err.code(), "invalid_argument");
    let err = busbar::InMemoryBus::new(Config::default().with_retention_days(u32::MAX))
        .err()
        .unwrap();
    assert_eq!(err.code(), "invalid_argument");
}
