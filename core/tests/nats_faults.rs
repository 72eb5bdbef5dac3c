//! Fault tests of durable delivery against a real server that the test kills (SIGKILL)
//! and restarts on the same store: every message the broker acknowledged reaches the
//! consumer at least once, none is lost; a consumer that crashes mid-batch gets its
//! unacknowledged messages again.
#![cfg(feature = "nats")]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use busbar::{Backend, Config, ConsumerConfig, EventBus, StreamConfig};

#[path = "support/durable_faults.rs"]
mod durable_faults;
#[path = "support/nats_server.rs"]
mod nats_server;
use nats_server::NatsServer;

async fn bus(server: &NatsServer) -> Arc<dyn EventBus> {
    let config = Config::default()
        .with_backend(Backend::Nats)
        .with_nats_url(server.url());
    busbar::connect(config).await.unwrap()
}

impl durable_faults::Broker for NatsServer {
    fn kill(&mut self) {
        NatsServer::kill(self);
    }
    fn restart(&mut self) {
        NatsServer::restart(self);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_messages_survive_a_server_kill() {
    let server = tokio::task::spawn_blocking(NatsServer::start).await.unwrap();
    let (publisher, consumer) = (bus(&server).await, bus(&server).await);
    // More than the 64 a consumer pulls ahead: some exist only in the server's store.
    let server = durable_faults::acked_messages_survive_a_kill(server, publisher, consumer, 400, 65).await;
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
