//! Publish→deliver throughput on the in-memory bus, 128-byte payloads, 1 and 4
//! subscribers, side by side with a bare `tokio::sync::broadcast` channel doing the
//! same work (one producer, N consumers, every consumer accounts for every message).
//!
//!     cargo bench -p busbar-benches --bench throughput

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use busbar::{Backpressure, Bytes, Config, Error, EventBus, InMemoryBus};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tokio::runtime::Runtime;
use tokio::sync::broadcast;

const MESSAGES: u64 = 20_000;

/// Messages the consumers were told they missed, per benchmark, printed at the end so a
/// throughput is never read without knowing how much of it was dropped.
static MISSED: Mutex<Vec<(String, u64, u64)>> = Mutex::new(Vec::new());

fn record(name: &str, missed: u64, total: u64) {
    let mut all = MISSED.lock().unwrap();
    match all.iter_mut().find(|(n, _, _)| n == name) {
        Some(entry) => {
            entry.1 += missed;
            entry.2 += total;
        }
        None => all.push((name.to_owned(), missed, total)),
    }
}
/// Buffer of every subscription and of the broadcast channel: larger than one round, so
/// no consumer can lag and both sides deliver every message (the same work).
const CAPACITY: usize = 32_768;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// One round: spawn `subs` consumers, publish MESSAGES, wait until each consumer has
/// accounted for all of them (received, or reported missed in lag mode).
async fn busbar_round(name: &str, bus: Arc<dyn EventBus>, subs: usize, payload: Bytes) -> Duration {
    let mut consumers = Vec::new();
    for _ in 0..subs {
        let mut sub = bus.subscribe("bench.orders.created").await.unwrap();
        consumers.push(tokio::spawn(async move {
            let (mut seen, mut lost) = (0, 0);
            while seen < MESSAGES {
                match sub.next().await {
                    Some(Ok(_)) => seen += 1,
                    Some(Err(Error::Lagged { missed, .. })) => {
                        seen += missed;
                        lost += missed
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            lost
        }));
    }
    let start = Instant::now();
    for _ in 0..MESSAGES {
        bus.publish("bench.orders.created", payload.clone())
            .await
            .unwrap();
    }
    finish(name, consumers, start).await
}

/// Waits for every consumer, then records what they missed; returns the round's time.
async fn finish(name: &str, consumers: Vec<tokio::task::JoinHandle<u64>>, start: Instant) -> Duration {
    let subs = consumers.len() as u64;
    let mut lost = 0;
    for c in consumers {
        lost += c.await.unwrap();
    }
    let elapsed = start.elapsed();
    record(name, lost, MESSAGES * subs);
    elapsed
}

async fn broadcast_round(name: &str, subs: usize, payload: Bytes) -> Duration {
    let (tx, _) = broadcast::channel::<Bytes>(CAPACITY);
    let mut consumers = Vec::new();
    for _ in 0..subs {
        let mut rx = tx.subscribe();
        consumers.push(tokio::spawn(async move {
            let (mut seen, mut lost) = (0, 0);
            while seen < MESSAGES {
                match rx.recv().await {
                    Ok(_) => seen += 1,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        seen += n;
                        lost += n
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            lost
        }));
    }
    let start = Instant::now();
    for _ in 0..MESSAGES {
        tx.send(payload.clone()).unwrap();
    }
    finish(name, consumers, start).await
}

fn publish_deliver(c: &mut Criterion) {
    let rt = runtime();
    let payload = Bytes::from(vec![b'x'; 128]);
    let mut group = c.benchmark_group("publish_deliver_128B");
    group.throughput(Throughput::Elements(MESSAGES));
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(4));
    for subs in [1usize, 4] {
        group.bench_with_input(BenchmarkId::new("tokio_broadcast", subs), &subs, |b, &subs| {
            b.iter_custom(|iters| {
                let name = format!("tokio_broadcast/{subs}");
                (0..iters)
                    .map(|_| rt.block_on(broadcast_round(&name, subs, payload.clone())))
                    .sum()
            })
        });
        for (name, mode) in [
            ("busbar_block", Backpressure::Block),
            ("busbar_lag", Backpressure::Lag),
        ] {
            group.bench_with_input(BenchmarkId::new(name, subs), &subs, |b, &subs| {
                let config = Config::default()
                    .with_subscription_capacity(CAPACITY)
                    .with_backpressure(mode);
                let bus: Arc<dyn EventBus> = Arc::new(InMemoryBus::new(config).unwrap());
                let name = format!("{name}/{subs}");
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| rt.block_on(busbar_round(&name, bus.clone(), subs, payload.clone())))
                        .sum()
                })
            });
        }
    }
    group.finish();
    for (name, missed, total) in MISSED.lock().unwrap().iter() {
        println!(
            "{name}: consumers missed {missed} of {total} messages ({:.1}%)",
            100.0 * *missed as f64 / *total as f64
        );
    }
}

criterion_group!(benches, publish_deliver);
criterion_main!(benches);
