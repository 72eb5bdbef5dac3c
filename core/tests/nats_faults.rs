//! Fault tests of durable delivery against a real server that the test kills (SIGKILL)
//! and restarts on the same store: every message the broker acknowledged reaches the
//! consumer at least once, none is lost; a consumer that crashes mid-batch gets its
//! unacknowledged messages again.
#![cfg(feature = "nats")]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use busbar::{Backend, Config, ConsumerConfig, EventBus, StreamConfig};

#[path = "support/nats_server.rs"]
mod nats_server;
use nats_server::NatsServer;

async fn bus(server: &NatsServer) -> Arc<dyn EventBus> {
    let config = Config::default()
        .with_backend(Backend::Nats)
        .with_nats_url(server.url());
    busbar::connect(config).await.unwrap()
}

/// Publishes `id` until the broker acknowledges it, through outages; the same id each
/// time, so a retry of a publish that was stored after all is deduplicated.
/// Returns how many tries failed.
async fn publish_until_acked(bus: &Arc<dyn EventBus>, id: &str) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut failed = 0;
    loop {
        let msg = bus
            .message("fault.work")
            .id(id)
            .data(id.to_owned())
            .build()
            .unwrap();
        match tokio::time::timeout(Duration::from_secs(2), bus.publish_durable(msg)).await {
            Ok(Ok(_)) => return failed,
            _ if tokio::time::Instant::now() > deadline => panic!("{id} never acknowledged"),
            _ => {
                failed += 1;
                tokio::time::sleep(Duration::from_millis(100)).await
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_messages_survive_a_server_kill() {
    const N: usize = 400;
    let started = tokio::task::spawn_blocking(NatsServer::start).await.unwrap();
    let publisher = bus(&started).await;
    publisher
        .declare_stream(StreamConfig::new("FAULT", ["fault.>"]))
        .await
        .unwrap();

    // The consumer, on its own connection, records what it processed and acks it.
    let consumer = bus(&started).await;
    let mut server = Some(started);
    let processed = Arc::new(Mutex::new(BTreeSet::new()));
    let mut sub = consumer
        .durable_subscribe(ConsumerConfig::new("FAULT", "worker").ack_wait(Duration::from_secs(2)))
        .await
        .unwrap();
    let seen = processed.clone();
    let consuming = tokio::spawn(async move {
        let mut deliveries = 0usize;
        while let Some(item) = sub.next().await {
            let Ok(m) = item else { continue };
            deliveries += 1;
            // A slow handler, so the stream holds acked but unprocessed messages at the kill.
            tokio::time::sleep(Duration::from_millis(10)).await;
            seen.lock()
                .unwrap()
                .insert(String::from_utf8(m.data().to_vec()).unwrap());
            // A lost ack (server down) only means a redelivery later.
            let _ = m.ack().await;
            if seen.lock().unwrap().len() == N {
                break;
            }
        }
        deliveries
    });

    let mut acked = BTreeSet::new();
    let mut killed = None;
    let mut failed_tries = 0;
    let mut events = publisher
        .connection_events()
        .expect("NATS reports its connection");
    for i in 0..N {
        let id = format!("m{i:04}");
        failed_tries += publish_until_acked(&publisher, &id).await;
        acked.insert(id);
        if i == N / 3 {
            // Kill the server mid-stream; it comes back on the same port and store while
            // the publisher keeps retrying and the consumer waits.
            let behind = acked.len() - processed.lock().unwrap().len();
            // More than the 64 a consumer pulls ahead: some exist only in the server's store.
            assert!(
                behind > 64,
                "the consumer should lag at the kill, is {behind} behind"
            );
            eprintln!("killing the server with {behind} acked messages not yet processed");
            let mut server = server.take().expect("killed once");
            killed = Some(tokio::task::spawn_blocking(move || {
                server.kill();
                std::thread::sleep(Duration::from_millis(800));
                server.restart();
                server
            }));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let server = killed.expect("the kill ran").await.unwrap();
    assert_eq!(acked.len(), N);
    let mut lost = false;
    while let Ok(event) = events.try_recv() {
        lost |= event == busbar::ConnectionEvent::Disconnected;
    }
    assert!(
        lost,
        "the publisher never lost its server: the test proved nothing"
    );
    // Publishes in flight at the kill either waited for the reconnect or were retried.
    eprintln!("publishes retried after the kill: {failed_tries}");

    let deliveries = tokio::time::timeout(Duration::from_secs(60), consuming)
        .await
        .unwrap_or_else(|_| {
            let seen = processed.lock().unwrap();
            let missing: Vec<_> = acked.difference(&seen).take(10).collect();
            panic!(
                "{} of {N} acked messages never delivered, e.g. {missing:?}",
                N - seen.len()
            )
        })
        .unwrap();
    let seen = processed.lock().unwrap().clone();
    assert_eq!(seen, acked, "every acknowledged message is delivered");
    assert!(
        deliveries >= N,
        "at least once: {deliveries} deliveries for {N} messages"
    );
    let info = publisher.stream_info("FAULT").await.unwrap();
    assert_eq!(
        info.messages as usize, N,
        "retries were deduplicated: one copy each"
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_crashes_mid_batch_gets_its_unacked_messages_again() {
    let server = tokio::task::spawn_blocking(NatsServer::start).await.unwrap();
    let publisher = bus(&server).await;
    publisher
        .declare_stream(StreamConfig::new("BATCH", ["fault.>"]))
        .await
        .unwrap();
    for i in 0..20 {
        let msg = publisher
            .message("fault.job")
            .data(format!("{i}"))
            .build()
            .unwrap();
        publisher.publish_durable(msg).await.unwrap();
    }
    let config = ConsumerConfig::new("BATCH", "crashy").ack_wait(Duration::from_millis(700));

    // First process: acks 8 of the batch, then dies with its connection (no drain, no ack).
    let crashing = bus(&server).await;
    let mut sub = crashing.durable_subscribe(config.clone()).await.unwrap();
    let mut acked = BTreeSet::new();
    for _ in 0..8 {
        let m = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        m.ack().await.unwrap();
        acked.insert(m.sequence());
    }
    crashing.flush().await.unwrap();
    let m = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let in_hand = m.sequence();
    drop((m, sub));
    crashing.close().await.unwrap();

    // Second process: gets everything not acked, the one in hand included, nothing acked.
    let survivor = bus(&server).await;
    let mut sub = survivor.durable_subscribe(config).await.unwrap();
    let mut again = BTreeSet::new();
    while again.len() < 12 {
        let m = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(
            !acked.contains(&m.sequence()),
            "acked message {} came back",
            m.sequence()
        );
        again.insert(m.sequence());
        m.ack().await.unwrap();
    }
    assert!(again.contains(&in_hand));
    let all: BTreeSet<u64> = acked.union(&again).copied().collect();
    assert_eq!(all, (1..=20).collect());
}
