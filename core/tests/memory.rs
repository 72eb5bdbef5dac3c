//! Behaviour only the in-memory backend can show directly: back-pressure modes,
//! counters, and what dropping things does.

use std::time::Duration;

use busbar::{Backpressure, Config, Error, EventBus, InMemoryBus};

const WAIT: Duration = Duration::from_secs(5);

fn bus(capacity: usize, mode: Backpressure) -> InMemoryBus {
    InMemoryBus::new(
        Config::default()
            .with_subscription_capacity(capacity)
            .with_backpressure(mode),
    )
    .unwrap()
}

#[tokio::test]
async fn lag_mode_drops_for_the_slow_subscriber_and_tells_it_how_many() {
    let bus = bus(4, Backpressure::Lag);
    let mut slow = bus.subscribe("feed").await.unwrap();
    let mut fast = bus.subscribe("feed").await.unwrap();
    let mut fast_got = Vec::new();
    for i in 0..10u8 {
        bus.publish("feed", vec![i].into()).await.unwrap();
        fast_got.push(fast.next().await.unwrap().unwrap().data()[0]);
    }
    assert_eq!(
        fast_got,
        (0..10).collect::<Vec<u8>>(),
        "the fast subscriber misses nothing"
    );
    let stats = slow.stats();
    assert_eq!((stats.delivered, stats.missed, stats.pending), (4, 6, 4));
    assert!(stats.lagging);
    assert_eq!(bus.stats().missed, 6);

    // The four queued messages come first, then the notice of the gap.
    for i in 0..4u8 {
        assert_eq!(slow.next().await.unwrap().unwrap().data()[0], i);
    }
    match slow.next().await {
        Some(Err(Error::Lagged { missed, pattern })) => {
            assert_eq!((missed, pattern.as_str()), (6, "feed"));
        }
        other => panic!("expected a lag notice, got {other:?}"),
    }
    assert!(!slow.stats().lagging, "reported, so no longer lagging");
    // After the gap the subscriber receives again.
    bus.publish("feed", vec![99].into()).await.unwrap();
    assert_eq!(slow.next().await.unwrap().unwrap().data()[0], 99);
}

#[tokio::test]
async fn lag_notice_comes_right_before_the_first_message_after_the_gap() {
    let bus = bus(2, Backpressure::Lag);
    let mut sub = bus.subscribe("feed").await.unwrap();
    for i in 0..5u8 {
        bus.publish("feed", vec![i].into()).await.unwrap(); // 0,1 queued; 2,3,4 missed
    }
    assert_eq!(sub.next().await.unwrap().unwrap().data()[0], 0);
    bus.publish("feed", vec![5].into()).await.unwrap(); // queued, carrying the gap of 3
    assert_eq!(sub.next().await.unwrap().unwrap().data()[0], 1);
    let err = sub.next().await.unwrap().unwrap_err();
    assert_eq!(err.code(), "lagged");
    assert!(err.to_string().contains("3 messages"), "{err}");
    assert_eq!(sub.next().await.unwrap().unwrap().data()[0], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_mode_makes_the_publisher_wait_and_loses_nothing() {
    let bus = std::sync::Arc::new(bus(4, Backpressure::Block));
    let mut sub = bus.subscribe("work").await.unwrap();
    let publisher = {
        let bus = bus.clone();
        tokio::spawn(async move {
            for i in 0..200u32 {
                bus.publish("work", i.to_be_bytes().to_vec().into())
                    .await
                    .unwrap();
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !publisher.is_finished(),
        "the publisher waits for the slow subscriber"
    );
    assert_eq!(sub.stats().pending, 4, "the buffer is full, not overfull");
    for i in 0..200u32 {
        let m = tokio::time::timeout(WAIT, sub.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(m.data()[..], i.to_be_bytes());
    }
    publisher.await.unwrap();
    assert_eq!(bus.stats().missed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_releases_a_publisher_blocked_on_a_full_buffer() {
    let bus = std::sync::Arc::new(bus(1, Backpressure::Block));
    let sub = bus.subscribe("work").await.unwrap();
    bus.publish("work", "fills the buffer".into()).await.unwrap();
    let blocked = {
        let bus = bus.clone();
        tokio::spawn(async move { bus.publish("work", "waits".into()).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!blocked.is_finished());
    sub.unsubscribe().await.unwrap();
    tokio::time::timeout(WAIT, blocked)
        .await
        .expect("publisher released")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn dropping_a_subscription_unsubscribes() {
    let bus = bus(8, Backpressure::Block);
    let a = bus.subscribe("a.>").await.unwrap();
    let b = bus.queue_subscribe("a.*", "g").await.unwrap();
    assert_eq!(bus.stats().subscriptions, 2);
    drop(a);
    drop(b);
    assert_eq!(bus.stats().subscriptions, 0);
    // No subscriber left: a request has no responders.
    let err = bus.request("a.b", "x".into(), WAIT).await.unwrap_err();
    assert_eq!(err.code(), "no_responders");
}

#[tokio::test]
async fn counters_add_up() {
    let bus = bus(8, Backpressure::Block);
    let _one = bus.subscribe("c.*").await.unwrap();
    let _two = bus.subscribe("c.>").await.unwrap();
    for _ in 0..3 {
        bus.publish("c.x", "1".into()).await.unwrap();
    }
    bus.publish("nobody", "1".into()).await.unwrap();
    let s = bus.stats();
    assert_eq!(
        (s.published, s.delivered, s.missed, s.subscriptions),
        (4, 6, 0, 2)
    );
}

#[tokio::test]
async fn subscribe_and_unsubscribe_churn_leaves_the_index_empty() {
    let bus = bus(8, Backpressure::Block);
    let patterns = ["a.b.c", "a.*.c", "a.>", "*.*.*", ">", "a.b.c"];
    for round in 0..50 {
        let mut subs = Vec::new();
        for p in patterns {
            subs.push(bus.subscribe(p).await.unwrap());
        }
        bus.publish("a.b.c", "x".into()).await.unwrap();
        for s in subs.iter_mut() {
            assert!(s.next().await.unwrap().is_ok(), "round {round}");
        }
        if round % 2 == 0 {
            for s in &subs {
                s.unsubscribe().await.unwrap();
            }
        }
    }
    assert_eq!(bus.stats().subscriptions, 0);
}

/// Subscriptions coming and going while publishers run must never leave a stale route
/// behind: once `subscribe` has returned, the next publish reaches the new subscription.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_subscriptions_see_the_next_publish_despite_the_route_cache() {
    let bus = std::sync::Arc::new(bus(1 << 16, Backpressure::Lag));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = {
        let (bus, stop) = (bus.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                bus.publish("hot.subject", "noise".into()).await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    for round in 0..200 {
        let mut sub = bus
            .subscribe(if round % 2 == 0 { "hot.*" } else { "hot.subject" })
            .await
            .unwrap();
        bus.publish("hot.subject", "marker".into()).await.unwrap();
        loop {
            let m = tokio::time::timeout(WAIT, sub.next())
                .await
                .expect("the marker arrives")
                .unwrap()
                .unwrap();
            if m.data() == "marker" {
                break;
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    publisher.await.unwrap();
}

#[tokio::test]
async fn a_durable_view_can_rewrite_withhold_or_refuse_messages() {
    use busbar::{ConsumerConfig, Error, StreamConfig};
    let bus = busbar::connect(Config::default()).await.unwrap();
    bus.declare_stream(StreamConfig::new("S", ["s.>"])).await.unwrap();
    for data in ["open", "secret", "broken"] {
        let m = bus.message("s.x").data(data).build().unwrap();
        bus.publish_durable(m).await.unwrap();
    }
    let config = ConsumerConfig::new("S", "viewer").ack_wait(Duration::from_millis(200));
    let mut sub = bus
        .durable_subscribe(config)
        .await
        .unwrap()
        .map_messages(|m| match &m.data()[..] {
            b"secret" => Ok(None),
            b"broken" => Err(Error::Crypto("cannot decrypt".into())),
            _ => Ok(Some(m.to_builder().data("OPEN").build()?)),
        });
    let first = sub.next().await.unwrap().unwrap();
    assert_eq!(first.data(), "OPEN");
    first.ack().await.unwrap();
    let err = sub.next().await.unwrap().unwrap_err();
    assert_eq!(err.code(), "crypto");
    // The refused message stays unacked and comes back; the withheld one does not.
    let again = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap();
    assert_eq!(again.unwrap().unwrap_err().code(), "crypto");
}
