//! The durable half of the contract (docs/design.md §4): acked publishes, dedupe, ack/nak/term,
//! backoff, dead letters, redelivery after a crash, replay and retention. Timing checks
//! only assert lower bounds (a redelivery never comes early), so a slow machine cannot
//! make them fail.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use busbar::durable::{DLQ_ATTEMPTS, DLQ_CONSUMER, DLQ_REASON, DLQ_SEQUENCE, DLQ_STREAM};
use busbar::{
    ConsumerConfig, ConsumerInfo, DurableMessage, DurableSubscription, EventBus, StartAt, StreamConfig,
};

const WAIT: Duration = Duration::from_secs(10);

async fn next(sub: &mut DurableSubscription) -> DurableMessage {
    match tokio::time::timeout(WAIT, sub.next()).await {
        Ok(Some(Ok(m))) => m,
        other => panic!(
            "expected a durable message from {:?}, got {other:?}",
            sub.config().name
        ),
    }
}

async fn assert_quiet(sub: &mut DurableSubscription, wait: Duration) {
    if let Ok(item) = tokio::time::timeout(wait, sub.next()).await {
        panic!("expected nothing from {:?}, got {item:?}", sub.config().name);
    }
}

fn text(m: &DurableMessage) -> &str {
    std::str::from_utf8(m.data()).unwrap()
}

async fn orders_stream(bus: &Arc<dyn EventBus>) {
    bus.declare_stream(StreamConfig::new("ORDERS", ["orders.>"]))
        .await
        .unwrap();
}

async fn publish(bus: &Arc<dyn EventBus>, subject: &str, data: &str) -> u64 {
    let msg = bus.message(subject).data(data.to_owned()).build().unwrap();
    bus.publish_durable(msg).await.unwrap().sequence
}

pub(crate) async fn durable_publish_is_acked_and_deduplicated(bus: Arc<dyn EventBus>) {
    orders_stream(&bus).await;
    let again = bus
        .declare_stream(StreamConfig::new("ORDERS", ["orders.>"]))
        .await;
    assert_eq!(again.unwrap().name, "ORDERS", "declaring twice is harmless");
    let mut watcher = bus.subscribe("orders.>").await.unwrap();

    let first = bus
        .message("orders.created")
        .id("order-1")
        .data("one")
        .build()
        .unwrap();
    let ack = bus.publish_durable(first.clone()).await.unwrap();
    assert_eq!(
        (ack.stream.as_str(), ack.sequence, ack.duplicate),
        ("ORDERS", 1, false)
    );
    assert_eq!(publish(&bus, "orders.paid", "two").await, 2);
    let retry = bus.publish_durable(first).await.unwrap();
    assert!(retry.duplicate, "same id inside the window is a duplicate");
    assert_eq!(retry.sequence, 1, "a duplicate reports the first copy's sequence");
    let info = bus.stream_info("ORDERS").await.unwrap();
    assert_eq!(
        (info.messages, info.first_sequence, info.last_sequence),
        (2, 1, 2)
    );

    // Plain subscribers see durable publishes too.
    let m = tokio::time::timeout(WAIT, watcher.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(m.id(), "order-1");

    let err = bus
        .publish_durable(bus.message("nowhere.x").build().unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "invalid_argument");
    assert!(err.to_string().contains("nowhere.x"), "{err}");
    let err = bus.stream_info("MISSING").await.unwrap_err();
    assert_eq!(err.code(), "invalid_argument", "{err}");
    let err = bus
        .declare_stream(StreamConfig::new("bad.name", ["x"]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "invalid_argument", "{err}");
    let err = bus
        .declare_stream(StreamConfig::new("TWICE", ["twice.Ã", "twice.Ã"]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "invalid_argument", "{err}");
    assert!(err.to_string().contains("twice"), "{err}");
    // More than a broker holds is refused, not a `backend` failure (the memory bus has no
    // limit to refuse it by).
    match bus
        .declare_stream(StreamConfig::new("HUGE", ["huge.x"]).max_bytes(1 << 60))
        .await
    {
        Ok(info) => assert_eq!(info.name, "HUGE"),
        Err(err) => assert_eq!(err.code(), "invalid_argument", "{err}"),
    }
    let err = bus
        .declare_stream(StreamConfig::new("OVERLAP", ["orders.created"]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "invalid_argument", "{err}");
    let err = bus
        .durable_subscribe(ConsumerConfig::new("MISSING", "c"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "invalid_argument", "{err}");
}

pub(crate) async fn ack_nak_and_backoff(bus: Arc<dyn EventBus>) {
    orders_stream(&bus).await;
    let base = Duration::from_millis(200);
    let config = ConsumerConfig::new("ORDERS", "billing")
        .ack_wait(Duration::from_secs(30))
        .max_deliver(5)
        .backoff(base, 2.0, Duration::from_secs(1));
    let mut sub = bus.durable_subscribe(config).await.unwrap();
    publish(&bus, "orders.created", "a").await;

    let m = next(&mut sub).await;
    assert_eq!(
        (text(&m), m.attempt(), m.sequence(), m.stream()),
        ("a", 1, 1, "ORDERS")
    );
    let naked = Instant::now();
    m.nak(None).await.unwrap();
    assert_eq!(
        m.ack().await.unwrap_err().code(),
        "invalid_argument",
        "settling twice is refused"
    );

    let m = next(&mut sub).await;
    assert_eq!(m.attempt(), 2);
    assert!(
        naked.elapsed() >= base.mul_f64(0.9),
        "first backoff is base: {:?}",
        naked.elapsed()
    );
    let naked = Instant::now();
    m.nak(None).await.unwrap();

    let m = next(&mut sub).await;
    assert_eq!(m.attempt(), 3);
    assert!(
        naked.elapsed() >= (base * 2).mul_f64(0.9),
        "second backoff is base*2: {:?}",
        naked.elapsed()
    );
    let naked = Instant::now();
    m.nak(Some(Duration::from_millis(50))).await.unwrap();

    let m = next(&mut sub).await;
    assert_eq!(m.attempt(), 4, "an explicit delay overrides the backoff");
    assert!(naked.elapsed() >= Duration::from_millis(45));
    m.ack().await.unwrap();
    assert_quiet(&mut sub, Duration::from_millis(700)).await;
}

pub(crate) async fn unacked_messages_come_back_after_a_crash(bus: Arc<dyn EventBus>) {
    orders_stream(&bus).await;
    let ack_wait = Duration::from_millis(500);
    let config = ConsumerConfig::new("ORDERS", "shipping").ack_wait(ack_wait);
    for i in 0..4 {
        publish(&bus, "orders.created", &format!("m{i}")).await;
    }
    let mut sub = bus.durable_subscribe(config.clone()).await.unwrap();
    let a = next(&mut sub).await;
    let b = next(&mut sub).await;
    a.ack().await.unwrap();
    assert_eq!((text(&a), text(&b)), ("m0", "m1"));
    // The handler "crashes" holding b unacked: the subscription is dropped.
    drop(b);
    drop(sub);
    let crashed = Instant::now();

    let mut sub = bus.durable_subscribe(config).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        let m = next(&mut sub).await;
        // On NATS the crashed subscription had pulled m2 and m3 ahead too, so they may
        // count an attempt as well; m1 certainly does.
        if text(&m) == "m1" {
            assert_eq!(m.attempt(), 2, "the unacked message is redelivered");
            assert!(crashed.elapsed() >= ack_wait.mul_f64(0.9), "not before ack_wait");
        }
        got.push(text(&m).to_owned());
        m.ack().await.unwrap();
    }
    got.sort();
    assert_eq!(got, ["m1", "m2", "m3"], "the acked m0 is not delivered again");
    assert_quiet(&mut sub, Duration::from_millis(800)).await;

    // in_progress restarts the ack_wait clock.
    publish(&bus, "orders.created", "slow").await;
    let m = next(&mut sub).await;
    tokio::time::sleep(ack_wait / 2).await;
    m.in_progress().await.unwrap();
    let extended = Instant::now();
    let again = next(&mut sub).await;
    assert_eq!((text(&again), again.attempt()), ("slow", 2));
    assert!(
        extended.elapsed() >= ack_wait.mul_f64(0.9),
        "{:?}",
        extended.elapsed()
    );
    again.ack().await.unwrap();
}

pub(crate) async fn dead_letters_after_max_deliver(bus: Arc<dyn EventBus>) {
    orders_stream(&bus).await;
    let config = ConsumerConfig::new("ORDERS", "fragile")
        .max_deliver(2)
        .ack_wait(Duration::from_millis(400))
        .backoff(Duration::from_millis(20), 1.0, Duration::from_millis(20));
    let mut sub = bus.durable_subscribe(config).await.unwrap();
    let mut dead = bus
        .durable_subscribe(ConsumerConfig::new("DLQ_DLQ", "inspector"))
        .await
        .unwrap();

    let poison = publish(&bus, "orders.poison", "p").await;
    let m = next(&mut sub).await;
    m.nak(None).await.unwrap();
    let m = next(&mut sub).await;
    assert_eq!(m.attempt(), 2);
    m.nak(None).await.unwrap();
    let letter = next(&mut dead).await;
    assert_eq!(letter.subject(), "dlq.orders.poison");
    assert_eq!(text(&letter), "p");
    assert!(
        letter.header(DLQ_REASON).unwrap().contains("nacked"),
        "{letter:?}"
    );
    assert_eq!(letter.header(DLQ_ATTEMPTS), Some("2"));
    assert_eq!(letter.header(DLQ_STREAM), Some("ORDERS"));
    assert_eq!(letter.header(DLQ_CONSUMER), Some("fragile"));
    assert_eq!(letter.header(DLQ_SEQUENCE), Some(poison.to_string().as_str()));
    letter.ack().await.unwrap();

    // term: at once, with the reason.
    publish(&bus, "orders.bad", "b").await;
    let m = next(&mut sub).await;
    m.term("cannot parse").await.unwrap();
    let letter = next(&mut dead).await;
    assert_eq!(letter.subject(), "dlq.orders.bad");
    assert!(letter.header(DLQ_REASON).unwrap().contains("cannot parse"));
    assert_eq!(letter.header(DLQ_ATTEMPTS), Some("1"));
    letter.ack().await.unwrap();

    // Never acked (the handler keeps crashing): dead-lettered once attempts run out.
    publish(&bus, "orders.hang", "h").await;
    for attempt in 1..=2 {
        let m = next(&mut sub).await;
        assert_eq!((text(&m), m.attempt()), ("h", attempt));
    }
    // The subscription dead-letters it when it meets the third delivery, and never yields it.
    let (letter, ()) = tokio::join!(
        next(&mut dead),
        assert_quiet(&mut sub, Duration::from_millis(1500))
    );
    assert_eq!(letter.subject(), "dlq.orders.hang");
    assert!(
        letter.header(DLQ_REASON).unwrap().contains("not acknowledged"),
        "{letter:?}"
    );
    assert_eq!(letter.header(DLQ_ATTEMPTS), Some("2"));
    letter.ack().await.unwrap();
}

pub(crate) async fn replay_from_sequence_time_and_start(bus: Arc<dyn EventBus>) {
    orders_stream(&bus).await;
    for i in 1..=3 {
        publish(&bus, "orders.created", &format!("m{i}")).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let cut = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    for i in 4..=5 {
        publish(&bus, "orders.created", &format!("m{i}")).await;
    }

    async fn read(bus: &Arc<dyn EventBus>, config: ConsumerConfig, n: usize) -> Vec<u64> {
        let mut sub = bus.durable_subscribe(config).await.unwrap();
        let mut seqs = Vec::new();
        for _ in 0..n {
            let m = next(&mut sub).await;
            seqs.push(m.sequence());
            m.ack().await.unwrap();
        }
        assert_quiet(&mut sub, Duration::from_millis(200)).await;
        seqs
    }
    let all = read(&bus, ConsumerConfig::new("ORDERS", "everything"), 5).await;
    assert_eq!(all, [1, 2, 3, 4, 5]);
    let from3 = read(
        &bus,
        ConsumerConfig::new("ORDERS", "from3").start(StartAt::Sequence(3)),
        3,
    )
    .await;
    assert_eq!(from3, [3, 4, 5]);
    let since = read(
        &bus,
        ConsumerConfig::new("ORDERS", "since").start(StartAt::Time(cut)),
        2,
    )
    .await;
    assert_eq!(since, [4, 5]);
    let filtered = ConsumerConfig::new("ORDERS", "paid").filter("orders.paid");
    publish(&bus, "orders.paid", "p").await;
    assert_eq!(read(&bus, filtered, 1).await, [6]);

    // A resumed consumer goes on where it was: only what came after.
    publish(&bus, "orders.created", "m7").await;
    assert_eq!(
        read(&bus, ConsumerConfig::new("ORDERS", "everything"), 2).await,
        [6, 7]
    );

    // Rate limit: 7 messages at 20/s take at least 6 intervals of 50 ms.
    let paced = ConsumerConfig::new("ORDERS", "paced").rate_limit(20.0);
    let started = Instant::now();
    read(&bus, paced, 7).await;
    assert!(
        started.elapsed() >= Duration::from_millis(290),
        "{:?}",
        started.elapsed()
    );
}

pub(crate) async fn shared_consumer_and_retention(bus: Arc<dyn EventBus>) {
    bus.declare_stream(StreamConfig::new("EVENTS", ["events.>"]).max_messages(3))
        .await
        .unwrap();
    for i in 1..=5 {
        publish(&bus, "events.tick", &i.to_string()).await;
    }
    let info = bus.stream_info("EVENTS").await.unwrap();
    assert_eq!(
        (info.messages, info.first_sequence, info.last_sequence),
        (3, 3, 5)
    );
    let mut sub = bus
        .durable_subscribe(ConsumerConfig::new("EVENTS", "late"))
        .await
        .unwrap();
    assert_eq!(
        next(&mut sub).await.sequence(),
        3,
        "discarded messages are not delivered"
    );

    // Two subscriptions on one durable name share its messages: each once.
    orders_stream(&bus).await;
    let config = ConsumerConfig::new("ORDERS", "workers");
    let mut a = bus.durable_subscribe(config.clone()).await.unwrap();
    let mut b = bus.durable_subscribe(config).await.unwrap();
    for i in 1..=20 {
        publish(&bus, "orders.created", &i.to_string()).await;
    }
    let mut seen = Vec::new();
    loop {
        let m = tokio::select! {
            m = a.next() => m,
            m = b.next() => m,
            _ = tokio::time::sleep(Duration::from_millis(500)) => break,
        };
        let m = m.unwrap().unwrap();
        seen.push(m.sequence());
        m.ack().await.unwrap();
    }
    seen.sort();
    assert_eq!(seen, (1..=20).collect::<Vec<_>>(), "every message exactly once");

    bus.declare_stream(StreamConfig::new("SHORT", ["short.>"]).max_age(Duration::from_secs(1)))
        .await
        .unwrap();
    publish(&bus, "short.lived", "x").await;
    assert_eq!(bus.stream_info("SHORT").await.unwrap().messages, 1);
    let deadline = Instant::now() + WAIT;
    while bus.stream_info("SHORT").await.unwrap().messages > 0 {
        assert!(Instant::now() < deadline, "max_age did not expire the message");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (up to [`WAIT`]) until `info` satisfies `done`: settlements reach the broker
/// asynchronously on NATS.
async fn consumer_when(
    bus: &Arc<dyn EventBus>,
    stream: &str,
    name: &str,
    done: impl Fn(&ConsumerInfo) -> bool,
) -> ConsumerInfo {
    let deadline = Instant::now() + WAIT;
    loop {
        let info = bus.consumer_info(stream, name).await.unwrap();
        if done(&info) || Instant::now() > deadline {
            return info;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The one `backend` item of a subscription whose consumer or stream was deleted.
async fn lost_notice(sub: &mut DurableSubscription) {
    // NATS notices within LOST_CONSUMER_NOTICE (10 s) at most.
    match tokio::time::timeout(Duration::from_secs(20), sub.next()).await {
        Ok(Some(Err(e))) => {
            assert_eq!(e.code(), "backend", "{e}");
            assert!(e.to_string().contains(&sub.config().name), "{e}");
        }
        other => panic!("expected the lost-consumer notice, got {other:?}"),
    }
}

fn expect_invalid<T: std::fmt::Debug>(result: busbar::Result<T>, what: &str) {
    let e = result.expect_err(what);
    assert_eq!(e.code(), "invalid_argument", "{what}: {e}");
}

pub(crate) async fn streams_and_consumers_are_listed_and_deleted(bus: Arc<dyn EventBus>) {
    orders_stream(&bus).await;
    bus.declare_stream(StreamConfig::new("AUDIT", ["audit.>", "trail.*"]))
        .await
        .unwrap();
    let listed: Vec<(String, Vec<String>)> = bus
        .list_streams()
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.name, s.subjects))
        .collect();
    assert_eq!(
        listed,
        [
            (
                "AUDIT".to_owned(),
                vec!["audit.>".to_owned(), "trail.*".to_owned()]
            ),
            ("ORDERS".to_owned(), vec!["orders.>".to_owned()]),
        ],
        "sorted by name, with their subjects"
    );
    for i in 1..=3 {
        publish(&bus, &format!("orders.{i}"), &format!("m{i}")).await;
    }
    publish(&bus, "audit.x", "not an order").await;
    let orders = bus.list_streams().await.unwrap();
    let orders = orders.iter().find(|s| s.name == "ORDERS").unwrap();
    assert_eq!((orders.messages, orders.last_sequence), (3, 3));

    // A consumer that read and settled part of the stream, and one that read nothing.
    let billing = ConsumerConfig::new("ORDERS", "billing").filter("orders.>");
    let mut sub = bus.durable_subscribe(billing.clone()).await.unwrap();
    let archive = bus
        .durable_subscribe(ConsumerConfig::new("ORDERS", "archive"))
        .await
        .unwrap();
    let (a, b, c) = (next(&mut sub).await, next(&mut sub).await, next(&mut sub).await);
    assert_eq!((text(&a), text(&b), text(&c)), ("m1", "m2", "m3"));
    a.ack().await.unwrap();
    b.ack().await.unwrap();
    bus.flush().await.unwrap();
    let info = consumer_when(&bus, "ORDERS", "billing", |i| i.ack_pending == 1).await;
    assert_eq!(
        (info.stream.as_str(), info.name.as_str(), info.filter.as_deref()),
        ("ORDERS", "billing", Some("orders.>"))
    );
    assert_eq!(
        (info.pending, info.ack_pending, info.delivered_sequence),
        (0, 1, 3),
        "{info:?}"
    );
    let consumers = bus.list_consumers("ORDERS").await.unwrap();
    let names: Vec<&str> = consumers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["archive", "billing"]);
    let idle = &consumers[0];
    assert_eq!(
        (
            idle.filter.as_deref(),
            idle.pending,
            idle.ack_pending,
            idle.delivered_sequence
        ),
        (None, 3, 0, 0)
    );
    assert!(bus.list_consumers("AUDIT").await.unwrap().is_empty());

    // Deleting the idle consumer forgets it.
    drop(archive);
    bus.delete_consumer("ORDERS", "archive").await.unwrap();
    let names: Vec<String> = bus
        .list_consumers("ORDERS")
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["billing"]);
    expect_invalid(
        bus.consumer_info("ORDERS", "archive").await,
        "info of a deleted consumer",
    );
    expect_invalid(
        bus.delete_consumer("ORDERS", "archive").await,
        "deleting it twice",
    );

    // Deleting the consumer under a live subscription: told once, then it starts over
    // from its configured start.
    drop(c);
    bus.delete_consumer("ORDERS", "billing").await.unwrap();
    lost_notice(&mut sub).await;
    for (n, want) in ["m1", "m2", "m3"].into_iter().enumerate() {
        let again = next(&mut sub).await;
        let seq = n as u64 + 1;
        assert_eq!((text(&again), again.sequence(), again.attempt()), (want, seq, 1));
        again.ack().await.unwrap();
    }

    // Deleting the stream: gone from the list, its subscription told, and reading again
    // once the stream is declared anew.
    bus.delete_stream("ORDERS").await.unwrap();
    lost_notice(&mut sub).await;
    let left: Vec<String> = bus
        .list_streams()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert!(
        !left.contains(&"ORDERS".to_owned()) && left.contains(&"AUDIT".to_owned()),
        "{left:?}"
    );
    expect_invalid(bus.stream_info("ORDERS").await, "info of a deleted stream");
    expect_invalid(bus.delete_stream("ORDERS").await, "deleting it twice");
    expect_invalid(
        bus.list_consumers("ORDERS").await,
        "consumers of a deleted stream",
    );
    orders_stream(&bus).await;
    publish(&bus, "orders.4", "m4").await;
    let resumed = next(&mut sub).await;
    assert_eq!(
        (text(&resumed), resumed.sequence()),
        ("m4", 1),
        "a new stream starts at 1"
    );
    resumed.ack().await.unwrap();

    // Bad names are bad input, never a broker error.
    expect_invalid(bus.delete_stream("bad name").await, "a bad stream name");
    expect_invalid(bus.list_consumers("").await, "an empty stream name");
    expect_invalid(bus.consumer_info("ORDERS", "a.b").await, "a bad consumer name");
    expect_invalid(
        bus.delete_consumer("ORDERS", &"x".repeat(65)).await,
        "a long consumer name",
    );
}
