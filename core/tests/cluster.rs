//! Faults on a real 3-node nats-server cluster (issue 18): routes between private loopback
//! ports, JetStream on every node with its own temporary store, an R3 stream. (a) the
//! stream's leader is killed (SIGKILL) in the middle of a run of acknowledged publishes and
//! a slow durable consumer: every acknowledged publish is delivered, the stream stores none
//! twice; (b) the node a client is connected to is killed: the client reconnects to another
//! node of its server list, its subscription resumes, its connection events say so; (c) a
//! node is hung (SIGSTOP) for 10 s: requests end at their deadline, publishes follow the
//! buffer policy, nothing hangs, and the client moves to a live node.
//!
//! Counts and recovery times are printed (`cargo test -p busbar-sdk --test cluster --
//! --nocapture`); `BUSBAR_CLUSTER_RUNS=5` repeats each scenario to measure them over several
//! runs. No assertion is timed: a call that would hang fails through an outer deadline.
#![cfg(feature = "nats")]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use busbar::{Backend, Config, ConnectionEvent, ConsumerConfig, EventBus, Subscription};
use tokio::sync::broadcast;

#[path = "support/nats_cluster.rs"]
mod nats_cluster;
#[path = "support/nats_server.rs"]
mod nats_server;
use nats_cluster::Cluster;

#[path = "support/events.rs"]
mod events;

/// Far longer than anything here should take: only a hang reaches it.
const HANG: Duration = Duration::from_secs(90);

/// How many times each scenario runs (`BUSBAR_CLUSTER_RUNS`, default 1).
fn runs() -> usize {
    std::env::var("BUSBAR_CLUSTER_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

async fn within<T>(what: &str, call: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(HANG, call)
        .await
        .unwrap_or_else(|_| panic!("{what} hung"))
}

async fn start_cluster() -> Cluster {
    tokio::task::spawn_blocking(|| Cluster::start(3)).await.unwrap()
}

/// A bus on the whole cluster (its server list), named by `source` so the node it is
/// connected to can be found, with quick reconnects.
async fn bus(cluster: &Cluster, source: &str, extra: &[(&str, &str)]) -> Arc<dyn EventBus> {
    let mut config = Config::default()
        .with_backend(Backend::Nats)
        .with_nats_url(cluster.urls())
        .with_source(source);
    for (key, value) in [
        ("reconnect_delay_ms", "20"),
        ("reconnect_max_delay_ms", "250"),
        ("connect_retries", "20"),
    ]
    .iter()
    .chain(extra)
    {
        config.set(key, value).unwrap();
    }
    within("connect", busbar::connect(config)).await.unwrap()
}

/// A bus on node `i` alone.
async fn node_bus(cluster: &Cluster, i: usize) -> Arc<dyn EventBus> {
    let config = Config::default()
        .with_backend(Backend::Nats)
        .with_nats_url(cluster.nodes[i].server.url());
    within("connect", busbar::connect(config)).await.unwrap()
}

/// Declares an R3 stream (busbar's `declare_stream` makes R1 streams) through async-nats,
/// waiting for the cluster's JetStream to have a leader; returns the stream leader's name.
async fn r3_stream(cluster: &Cluster, name: &str, subjects: &str) -> String {
    let addrs: Vec<async_nats::ServerAddr> = cluster.urls().split(',').map(|u| u.parse().unwrap()).collect();
    let client = within("connect", async_nats::connect(addrs)).await.unwrap();
    let js = jetstream::new(client.clone());
    let config = jetstream::stream::Config {
        name: name.to_owned(),
        subjects: vec![subjects.to_owned()],
        num_replicas: 3,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    };
    let leader = within("the R3 stream and its leader", async {
        loop {
            if let Ok(mut stream) = js.get_or_create_stream(config.clone()).await {
                let leader = stream
                    .info()
                    .await
                    .ok()
                    .and_then(|info| info.cluster.as_ref()?.leader.clone());
                if let Some(leader) = leader {
                    return leader;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    client.drain().await.ok();
    leader
}

/// Publishes `id` until the cluster acknowledges it, through the election; the same id
/// each time, so a retry of a publish that was stored after all is deduplicated.
async fn publish_until_acked(bus: &Arc<dyn EventBus>, id: &str) {
    within("a publish being acknowledged", async {
        loop {
            let msg = bus.message("cl.work").id(id).data(id.to_owned()).build().unwrap();
            match bus.publish_durable(msg).await {
                Ok(_) => return,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await
}

async fn event(events: &mut broadcast::Receiver<ConnectionEvent>, wanted: ConnectionEvent) {
    events::wait_for(events, HANG, |e| *e == wanted).await
}

/// Waits for the node holding the client named `source`.
async fn node_of(cluster: &mut Cluster, source: &str) -> usize {
    within("finding the client's node", async {
        loop {
            if let Some(i) = cluster.node_with_client(source) {
                return i;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
}

/// The next message of `sub` within `limit`, if any.
async fn next_within(sub: &mut Subscription, limit: Duration) -> Option<busbar::Message> {
    match tokio::time::timeout(limit, sub.next()).await {
        Ok(Some(Ok(m))) => Some(m),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_publishes_survive_a_leader_kill() {
    const N: usize = 300;
    for run in 1..=runs() {
        let mut cluster = start_cluster().await;
        let leader = r3_stream(&cluster, "CLUSTER", "cl.>").await;
        let leader = cluster.index_of(&leader).expect("the leader is one of the nodes");
        let pid = std::process::id();
        let publisher = bus(
            &cluster,
            &format!("cl-a-pub-{pid}-{run}"),
            &[("publish_timeout_ms", "2000")],
        )
        .await;
        let consumer = bus(&cluster, &format!("cl-a-sub-{pid}-{run}"), &[]).await;

        // A slow consumer on its own connection records what it processed and acks it.
        let mut sub = consumer
            .durable_subscribe(ConsumerConfig::new("CLUSTER", "worker").ack_wait(Duration::from_secs(2)))
            .await
            .unwrap();
        let processed = Arc::new(Mutex::new(BTreeSet::new()));
        let deliveries = Arc::new(Mutex::new(0usize));
        let consuming = tokio::spawn({
            let (processed, deliveries) = (processed.clone(), deliveries.clone());
            async move {
                while let Some(item) = sub.next().await {
                    let Ok(m) = item else { continue };
                    *deliveries.lock().unwrap() += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    let done = {
                        let mut seen = processed.lock().unwrap();
                        seen.insert(String::from_utf8(m.data().to_vec()).unwrap());
                        seen.len() == N
                    };
                    // A lost ack (during the election) only means a redelivery later.
                    let _ = m.ack().await;
                    if done {
                        break;
                    }
                }
            }
        });

        let mut acked = BTreeSet::new();
        let mut killed_at = None;
        let mut recovery = None;
        for i in 0..N {
            if i == N / 3 {
                cluster.nodes[leader].server.kill();
                killed_at = Some(Instant::now());
            }
            let id = format!("m-{i:04}");
            publish_until_acked(&publisher, &id).await;
            if let (Some(at), None) = (killed_at, recovery) {
                recovery = Some(at.elapsed());
            }
            acked.insert(id);
        }
        within("the consumer processing every acked publish", consuming)
            .await
            .unwrap();
        let processed = processed.lock().unwrap().clone();
        let deliveries = *deliveries.lock().unwrap();
        let stored = within("stream info", publisher.stream_info("CLUSTER"))
            .await
            .unwrap()
            .messages;
        let lost = acked.difference(&processed).count();
        eprintln!(
            "leader kill, run {run}: acked {}, delivered {}, redelivered {}, stored {stored}, duplicates {}, lost {lost}; \
             recovery (kill of {} -> first acked publish) {:?}",
            acked.len(),
            processed.len(),
            deliveries - processed.len(),
            stored.saturating_sub(acked.len() as u64),
            cluster.nodes[leader].name,
            recovery.unwrap()
        );
        assert_eq!(lost, 0, "acknowledged publishes were lost");
        assert_eq!(
            stored, N as u64,
            "the stream stored an acknowledged publish twice, or lost one"
        );
        publisher.close().await.ok();
        consumer.close().await.ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_fails_over_when_its_node_dies() {
    for run in 1..=runs() {
        let mut cluster = start_cluster().await;
        let source = format!("cl-b-{}-{run}", std::process::id());
        let client = bus(&cluster, &source, &[]).await;
        let mut events = client.connection_events().unwrap();
        let mut sub = client.subscribe("fo.>").await.unwrap();
        client.flush().await.unwrap();
        let on = node_of(&mut cluster, &source).await;
        // A publisher on another node; the cluster routes its messages to the client.
        let other = (on + 1) % cluster.nodes.len();
        let observer = node_bus(&cluster, other).await;

        cluster.nodes[on].server.kill();
        let killed_at = Instant::now();
        event(&mut events, ConnectionEvent::Disconnected).await;
        let disconnected = killed_at.elapsed();
        event(&mut events, ConnectionEvent::Connected).await;
        let connected = killed_at.elapsed();
        let first_publish = within("the first publish after the kill", async {
            loop {
                if client.publish("fo.self", "x".into()).await.is_ok() && client.flush().await.is_ok() {
                    return killed_at.elapsed();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        let resumed = within("the subscription resuming", async {
            loop {
                observer.publish("fo.routed", "y".into()).await.unwrap();
                observer.flush().await.unwrap();
                while let Some(m) = next_within(&mut sub, Duration::from_millis(300)).await {
                    if m.subject() == "fo.routed" {
                        return killed_at.elapsed();
                    }
                }
            }
        })
        .await;
        let now_on = node_of(&mut cluster, &source).await;
        eprintln!(
            "node kill, run {run}: killed {}, the client moved to {}; disconnected event after {disconnected:?}, \
             connected after {connected:?}, first publish after {first_publish:?}, subscription resumed after {resumed:?}",
            cluster.nodes[on].name, cluster.nodes[now_on].name
        );
        assert_ne!(now_on, on);
        assert_eq!(client.stats().disconnects, 1);
        client.close().await.ok();
        observer.close().await.ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_node_bounds_every_call_and_the_client_moves_on() {
    const STOPPED: Duration = Duration::from_secs(10);
    for run in 1..=runs() {
        let mut cluster = start_cluster().await;
        let source = format!("cl-c-{}-{run}", std::process::id());
        let client = bus(
            &cluster,
            &source,
            &[
                ("ping_interval_ms", "1000"),
                // A reconnect may try the hung node again: it accepts the connection and
                // says nothing, so only the connect timeout moves the client on.
                ("connect_timeout_ms", "1000"),
                ("publish_timeout_ms", "1000"),
                ("publish_buffer", "64"),
                ("publish_buffer_full", "fail"),
            ],
        )
        .await;
        let mut events = client.connection_events().unwrap();
        let on = node_of(&mut cluster, &source).await;
        // A responder on another node.
        let other = (on + 1) % cluster.nodes.len();
        let server = node_bus(&cluster, other).await;
        let responder = server.subscribe("svc.c").await.unwrap();
        server.flush().await.unwrap();
        tokio::spawn(busbar::serve(responder, |_| async {
            bytes::Bytes::from_static(b"pong")
        }));
        within("a request before the hang", async {
            while client
                .request("svc.c", "ping".into(), Duration::from_secs(1))
                .await
                .is_err()
            {}
        })
        .await;

        let hung = cluster.nodes[on].server.hang();
        let hung_at = Instant::now();
        // A request ends at its deadline (its reply cannot come through the hung node).
        let started = Instant::now();
        let err = within(
            "a request to a hung node",
            client.request("svc.c", "ping".into(), Duration::from_millis(500)),
        )
        .await
        .unwrap_err();
        let request_ended = started.elapsed();
        assert!(matches!(err.code(), "timeout" | "backend"), "{err}");
        // Publishes follow the buffer policy: `fail`, so a full buffer fails at once.
        let big = bytes::Bytes::from(vec![b'x'; 64 * 1024]);
        let mut sent = 0;
        let buffer_err = within("publishing into a hung node", async {
            loop {
                match client.publish("fill.c", big.clone()).await {
                    Ok(()) => sent += 1,
                    Err(e) => return Some(e),
                }
                if sent == 100_000 {
                    return None;
                }
            }
        })
        .await;
        // The client takes the node for dead (unanswered pings) and moves to a live one.
        event(&mut events, ConnectionEvent::Disconnected).await;
        let left_after = hung_at.elapsed();
        let answered_after = within("a request answered again", async {
            loop {
                if client
                    .request("svc.c", "ping".into(), Duration::from_millis(500))
                    .await
                    .is_ok()
                {
                    return hung_at.elapsed();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        let flushed = within("a flush", client.flush()).await;
        tokio::time::sleep(STOPPED.saturating_sub(hung_at.elapsed())).await;
        drop(hung);
        eprintln!(
            "hung node, run {run}: {} stopped for {STOPPED:?}; a 500 ms request ended after {request_ended:?} ({}); \
             {sent} publishes of 64 KiB went into the buffer, then {}; the client left the node after {left_after:?}, \
             a request was answered again after {answered_after:?}; flush after that: {flushed:?}",
            cluster.nodes[on].name,
            err.code(),
            buffer_err.as_ref().map_or("none failed".to_owned(), |e| e.to_string()),
        );
        let buffer_err =
            buffer_err.expect("a full publish buffer failed a publish (publish_buffer_full = fail)");
        assert_eq!(buffer_err.code(), "backend", "{buffer_err}");
        assert!(
            buffer_err.to_string().contains("publish_buffer_full is fail"),
            "{buffer_err}"
        );
        client.close().await.ok();
        server.close().await.ok();
    }
}
