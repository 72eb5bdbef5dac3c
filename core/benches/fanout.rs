//! In-memory publish→deliver fan-out, side by side with a bare `tokio::sync::broadcast`
//! channel doing the same work (one producer, N consumers, each accounting for every
//! message), at 1, 4, 16 and 64 subscribers; then the memory an idle subscription holds
//! on the in-memory bus, and on NATS beside a raw async-nats subscription (a private
//! nats-server). Rounds interleaved; prints medians and the median per-round ratio.
//!
//!     cargo bench -p busbar-benches --bench fanout

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use busbar::{Bytes, Config, Error, EventBus, InMemoryBus};
use tokio::sync::broadcast;

#[path = "../tests/support/nats_server.rs"]
mod nats_server;
#[path = "side_by_side.rs"]
mod side_by_side;
use side_by_side::{load_average, side_by_side};

/// The system allocator, counting the bytes live while [`COUNTING`] is on, to weigh an
/// idle subscription. Off during the rates: a counter written by every allocation and
/// free would bounce between the publisher's and the subscribers' cores, a cost of the
/// bench, not of the code measured.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static COUNTING: AtomicBool = AtomicBool::new(false);

fn count(bytes: isize) {
    if COUNTING.load(Relaxed) {
        LIVE.fetch_add(bytes, Relaxed);
    }
}

// SAFETY: forwards every call to `System` unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const ROUNDS: usize = 5;
/// Messages per round, shared out so every row moves about the same number of copies.
const COPIES: u64 = 400_000;
/// Buffer of every subscription and of the broadcast channel: larger than one round, so
/// no consumer can lag and both sides deliver every message (the same work).
const CAPACITY: usize = 65_536;

fn messages(subs: usize) -> u64 {
    (COPIES / subs as u64).clamp(5_000, CAPACITY as u64)
}

/// Messages per second published and delivered to all `subs` consumers.
async fn busbar_round(subs: usize, payload: Bytes) -> f64 {
    let n = messages(subs);
    let config = Config::default().with_subscription_capacity(CAPACITY);
    let bus: Arc<dyn EventBus> = Arc::new(InMemoryBus::new(config).unwrap());
    let mut consumers = Vec::new();
    for _ in 0..subs {
        let mut sub = bus.subscribe("bench.fan").await.unwrap();
        consumers.push(tokio::spawn(async move {
            let mut seen = 0;
            while seen < n {
                match sub.next().await {
                    Some(Ok(_)) => seen += 1,
                    Some(Err(Error::Lagged { missed, .. })) => seen += missed,
                    other => panic!("unexpected {other:?}"),
                }
            }
        }));
    }
    let start = Instant::now();
    for _ in 0..n {
        bus.publish("bench.fan", payload.clone()).await.unwrap();
    }
    for c in consumers {
        c.await.unwrap();
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    bus.close().await.unwrap();
    rate
}

async fn broadcast_round(subs: usize, payload: Bytes) -> f64 {
    let n = messages(subs);
    let (tx, _) = broadcast::channel::<Bytes>(CAPACITY);
    let mut consumers = Vec::new();
    for _ in 0..subs {
        let mut rx = tx.subscribe();
        consumers.push(tokio::spawn(async move {
            let mut seen = 0;
            while seen < n {
                match rx.recv().await {
                    Ok(_) => seen += 1,
                    Err(broadcast::error::RecvError::Lagged(k)) => seen += k,
                    Err(e) => panic!("{e}"),
                }
            }
        }));
    }
    let start = Instant::now();
    for _ in 0..n {
        tx.send(payload.clone()).unwrap();
    }
    for c in consumers {
        c.await.unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Bytes held per idle subscription: the growth of live heap while `subscribe` makes 1000
/// more (after `settle`, which lets a connection's task finish its part), per subscription.
/// One is made first, so what a bus or connection allocates once is not counted.
async fn idle_bytes<S, F, Fut>(mut subscribe: F, settle: impl AsyncFnOnce()) -> f64
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = S>,
{
    const SUBS: usize = 1000;
    let first = subscribe(0).await;
    let mut subs = Vec::with_capacity(SUBS);
    COUNTING.store(true, Relaxed);
    let before = LIVE.load(Relaxed);
    for i in 0..SUBS {
        subs.push(subscribe(i + 1).await);
    }
    settle().await;
    let grown = LIVE.load(Relaxed) - before;
    COUNTING.store(false, Relaxed);
    drop((first, subs));
    grown as f64 / SUBS as f64
}

async fn idle_subscription_bytes() -> f64 {
    let bus: Arc<dyn EventBus> = Arc::new(InMemoryBus::new(Config::default()).unwrap());
    let subscribe = |i| {
        let bus = bus.clone();
        async move { bus.subscribe(&format!("idle.{i}")).await.unwrap() }
    };
    idle_bytes(subscribe, async || {}).await
}

/// The same on NATS: (raw async-nats, busbar), each on its own connection.
async fn idle_nats_subscription_bytes(url: &str) -> (f64, f64) {
    let raw = async_nats::connect(url).await.unwrap();
    let subscribe = |i| {
        let raw = raw.clone();
        async move { raw.subscribe(format!("idle.raw.{i}")).await.unwrap() }
    };
    let raw_bytes = idle_bytes(subscribe, async || raw.flush().await.unwrap()).await;
    let config = Config::default()
        .with_backend(busbar::Backend::Nats)
        .with_nats_url(url);
    let bus: Arc<dyn EventBus> = busbar::connect(config).await.unwrap();
    let subscribe = |i| {
        let bus = bus.clone();
        async move { bus.subscribe(&format!("idle.busbar.{i}")).await.unwrap() }
    };
    let busbar_bytes = idle_bytes(subscribe, async || bus.flush().await.unwrap()).await;
    bus.close().await.unwrap();
    (raw_bytes, busbar_bytes)
}

fn main() {
    let Some(rt) = side_by_side::runtime() else {
        return;
    };
    println!(
        "in-memory fan-out, 128 B; {ROUNDS} interleaved rounds, medians; ratio = median of the \
         per-round busbar / broadcast; load average {}\n",
        load_average()
    );
    println!(
        "{:<32} {:>14} {:>14} {:<8} {:>7}",
        "", "broadcast", "busbar", "", "ratio"
    );
    let payload = Bytes::from(vec![b'x'; 128]);
    for subs in [1usize, 4, 16, 64] {
        let (raw, ours, ratio) = side_by_side(
            ROUNDS,
            || rt.block_on(broadcast_round(subs, payload.clone())),
            || rt.block_on(busbar_round(subs, payload.clone())),
        );
        println!(
            "{:<32} {:>14.0} {:>14.0} {:<8} {:>6.2}x",
            format!("publish->deliver, {subs} subscribers"),
            raw,
            ours,
            "msgs/s",
            ratio
        );
    }
    println!(
        "{:<32} {:>14} {:>14.0} {:<8}",
        "memory per idle subscription",
        "",
        rt.block_on(idle_subscription_bytes()),
        "bytes"
    );
    let server = nats_server::NatsServer::start();
    let (raw, ours) = rt.block_on(idle_nats_subscription_bytes(&server.url()));
    println!(
        "{:<32} {:>14.0} {:>14.0} {:<8} {:>6.2}x",
        "  on NATS (raw: async-nats)",
        raw,
        ours,
        "bytes",
        ours / raw
    );
    println!("\nload average at the end: {}", load_average());
}
