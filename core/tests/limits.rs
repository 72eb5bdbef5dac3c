//! Limits and hostile inputs (issue 12): deep and long subjects on both backends,
//! the payload limit with the header block counted, numeric options, lost streams.

use std::sync::Arc;
use std::time::Duration;

use busbar::{Backend, Config, EventBus};

#[cfg(feature = "nats")]
#[path = "support/nats_server.rs"]
mod nats_server;

#[macro_use]
#[path = "support/both.rs"]
mod both;
use both::memory;
#[cfg(feature = "nats")]
use both::{nats, start};

const WAIT: Duration = Duration::from_secs(5);
const MAX_BYTES: usize = busbar::subject::MAX_SUBJECT_BYTES;
const MAX_TOKENS: usize = busbar::subject::MAX_SUBJECT_TOKENS;

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

on_both!(
    numeric_options,
    numeric_options_in_memory,
    numeric_options_on_nats
);

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

/// The default `max_payload` is accepted on both backends: the NATS server counts the
/// header block too, and busbar keeps `MAX_HEADER_BLOCK` of the server's limit for it. One
/// byte more is `payload_too_large` with the same numbers everywhere (never `backend`); a
/// header block over its budget is `invalid_argument` on both backends alike.
async fn payload_limit_counts_headers(bus: Arc<dyn EventBus>) {
    let max = busbar::config::DEFAULT_MAX_PAYLOAD;
    assert_eq!(
        max + busbar::bounds::MAX_HEADER_BLOCK,
        1024 * 1024,
        "the server's default"
    );
    let mut sub = bus.subscribe("big.>").await.unwrap();
    bus.flush().await.unwrap();
    let traced = |len: usize| {
        bus.message("big.one")
            .header("tenant", "acme")
            .traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .tracestate("v".repeat(512))
            .data(vec![b'x'; len])
            .build()
            .unwrap()
    };
    bus.publish_message(traced(max)).await.unwrap();
    let got = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got.data().len(), max);
    bus.publish("big.two", vec![0u8; max].into()).await.unwrap();
    let got = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got.data().len(), max);

    for err in [
        bus.publish_message(traced(max + 1)).await.unwrap_err(),
        bus.publish("big.two", vec![0u8; max + 1].into())
            .await
            .unwrap_err(),
        bus.request("big.two", vec![0u8; max + 1].into(), WAIT)
            .await
            .unwrap_err(),
    ] {
        assert!(
            matches!(err, busbar::Error::PayloadTooLarge { size, max: m } if size == max + 1 && m == max),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            format!("payload of {} bytes exceeds max_payload of {max} bytes", max + 1)
        );
    }
    // Headers have their own budget, counted as NATS sends them.
    let fat = bus
        .message("big.one")
        .header("blob", "h".repeat(busbar::bounds::MAX_HEADER_BLOCK))
        .build()
        .unwrap();
    let err = bus.publish_message(fat).await.unwrap_err();
    assert_eq!(err.code(), "invalid_argument", "{err}");
    assert!(err.to_string().contains("8192 bytes"), "{err}");
    // Durable publishes count the same way.
    bus.declare_stream(busbar::StreamConfig::new("BIG", ["big.>"]))
        .await
        .unwrap();
    let err = bus.publish_durable(traced(max + 1)).await.unwrap_err();
    assert_eq!(err.code(), "payload_too_large", "{err}");
    bus.publish_durable(traced(max)).await.unwrap();
}

#[tokio::test]
async fn payload_limit_counts_headers_in_memory() {
    payload_limit_counts_headers(memory()).await;
}

#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_limit_counts_headers_on_nats() {
    let server = start().await;
    payload_limit_counts_headers(nats(&server).await).await;
    // Configured at the server's own limit, the payload limit is the server's less the
    // header budget, and a payload of the server's size is payload_too_large, not backend.
    let config = Config::default()
        .with_backend(Backend::Nats)
        .with_nats_url(server.url())
        .with_max_payload(1024 * 1024);
    let bus = busbar::connect(config).await.unwrap();
    let err = bus
        .publish("big.x", vec![0u8; 1024 * 1024].into())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            busbar::Error::PayloadTooLarge {
                size: 1048576,
                max: 1040384
            }
        ),
        "{err}"
    );
}

/// Header and attribute values lose surrounding whitespace on both backends, as NATS
/// header blocks do.
async fn header_values_are_trimmed(bus: Arc<dyn EventBus>) {
    let mut sub = bus.subscribe("trim").await.unwrap();
    bus.flush().await.unwrap();
    let msg = bus
        .message("trim")
        .header("tenant", "  acme \t")
        .correlation_id(" c-1 ")
        .data("x")
        .build()
        .unwrap();
    assert_eq!(msg.header("tenant"), Some("acme"));
    bus.publish_message(msg).await.unwrap();
    let got = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got.header("tenant"), Some("acme"));
    assert_eq!(got.correlation_id(), Some("c-1"));
}

on_both!(
    header_values_are_trimmed,
    header_values_are_trimmed_in_memory,
    header_values_are_trimmed_on_nats
);

/// How a test takes a durable subscription's stream away.
#[cfg(feature = "nats")]
enum Loss {
    /// The server restarts on an empty store.
    EmptyStore,
    /// An operator deletes the stream; the connection stays up.
    Deleted,
}

/// A durable subscription whose stream is lost reports it as a `backend` error item within
/// `LOST_CONSUMER_NOTICE` (plus the client's reconnection delay), and resumes on its own
/// once the stream is declared again (docs/design.md §4). Before, it stalled silently.
#[cfg(feature = "nats")]
async fn durable_subscription_survives(loss: Loss) {
    use busbar::{ConsumerConfig, StreamConfig};
    let notice = busbar::durable::LOST_CONSUMER_NOTICE + Duration::from_secs(3);
    let mut server = start().await;
    let bus = nats(&server).await;
    let stream = || StreamConfig::new("LOST", ["lost.>"]);
    bus.declare_stream(stream()).await.unwrap();
    let mut sub = bus
        .durable_subscribe(ConsumerConfig::new("LOST", "worker"))
        .await
        .unwrap();
    let publish = |data: &'static str| {
        let bus = bus.clone();
        async move {
            let msg = bus.message("lost.a").data(data).build().unwrap();
            bus.publish_durable(msg).await.unwrap();
        }
    };
    publish("before").await;
    let msg = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(msg.data().as_ref(), b"before");
    msg.ack().await.unwrap();

    let started = std::time::Instant::now();
    match loss {
        Loss::EmptyStore => {
            server = tokio::task::spawn_blocking(move || {
                server.restart_empty();
                server
            })
            .await
            .unwrap();
        }
        Loss::Deleted => {
            let operator = async_nats::connect(server.url()).await.unwrap();
            async_nats::jetstream::new(operator)
                .delete_stream("LOST")
                .await
                .unwrap();
        }
    }
    let item = tokio::time::timeout(notice, sub.next())
        .await
        .expect("the lost stream is reported in time")
        .expect("the subscription goes on");
    let err = item.expect_err("an error item, not a message");
    assert_eq!(err.code(), "backend", "{err}");
    assert!(err.to_string().contains("\"LOST\""), "{err}");
    assert!(started.elapsed() <= notice);

    // Declared again (once the bus is back), the subscription resumes by itself.
    let deadline = tokio::time::Instant::now() + WAIT;
    while bus.declare_stream(stream()).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "the bus reconnects");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    publish("after").await;
    let msg = tokio::time::timeout(notice, sub.next())
        .await
        .expect("delivery resumes once the stream is back")
        .unwrap()
        .unwrap();
    assert_eq!(msg.data().as_ref(), b"after");
    msg.ack().await.unwrap();
    drop(server);
}

#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_subscription_survives_a_lost_store() {
    durable_subscription_survives(Loss::EmptyStore).await;
}

#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_subscription_survives_a_deleted_stream() {
    durable_subscription_survives(Loss::Deleted).await;
}

/// Resident memory of the process, in bytes (Linux).
fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Memory per idle subscription, for the record (issue 12 asked for a figure):
/// `cargo test --release -p busbar-sdk --test limits -- --ignored --nocapture --test-threads=1 per_idle`
/// (one at a time: run together, each would read the other's memory in the process).
async fn memory_per_idle_subscription(bus: Arc<dyn EventBus>, name: &str) {
    const N: usize = 20_000;
    let mut subs = Vec::with_capacity(N);
    let before = resident_bytes();
    for i in 0..N {
        subs.push(bus.subscribe(&format!("idle.{i}")).await.unwrap());
    }
    bus.flush().await.unwrap();
    let per = (resident_bytes() - before) / N;
    println!("{name}: {per} bytes of resident memory per idle subscription ({N} subscriptions)");
    assert!(per > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn memory_per_idle_subscription_in_memory() {
    memory_per_idle_subscription(memory(), "memory").await;
}

#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn memory_per_idle_subscription_on_nats() {
    let server = start().await;
    memory_per_idle_subscription(nats(&server).await, "nats").await;
}

/// An error quotes at most 64 characters of an input: a 1 MB subject, header name or
/// config value makes a short message, not a 1 MB one.
#[tokio::test]
async fn errors_quote_inputs_short() {
    let huge = "x".repeat(1 << 20);
    let bus = memory();
    let errors = [
        bus.publish(&huge, "x".into()).await.unwrap_err(),
        bus.message("a")
            .header(format!("{huge} "), "v")
            .build()
            .unwrap_err(),
        bus.message("a")
            .header("h", format!("{huge}\nmore"))
            .build()
            .unwrap_err(),
        bus.queue_subscribe("a", &huge).await.unwrap_err(),
        Config::default().set(&huge, "1").unwrap_err(),
        Config::default().set("max_payload", &huge).unwrap_err(),
        Config::default().set("backend", &huge).unwrap_err(),
        bus.durable_subscribe(busbar::ConsumerConfig::new(huge.as_str(), "c"))
            .await
            .unwrap_err(),
    ];
    for err in errors {
        let text = err.to_string();
        // Short whatever the input's size: the input is cut to 64 characters; the longest
        // fixed part is the unknown-key error's list of every key (about 1,000 bytes).
        assert!(text.len() < 1500, "{} bytes: {}", text.len(), &text[..200]);
        assert!(text.contains("… (10485"), "{text}");
    }
}
