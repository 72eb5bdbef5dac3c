//! In-memory publish→deliver fan-out, side by side with a bare `tokio::sync::broadcast`
//! channel doing the same work (one producer, N consumers, each accounting for every
//! message), at 1, 4, 16 and 64 subscribers; then the memory an idle subscription holds
//! on the in-memory bus. Rounds interleaved; prints medians and the median per-round ratio.
//!
//!     cargo bench -p busbar-benches --bench fanout

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use busbar::{Bytes, Config, Error, EventBus, InMemoryBus};
use tokio::sync::broadcast;

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

/// Bytes held per idle subscription: the growth of live heap over 1000 subscriptions.
async fn idle_subscription_bytes() -> f64 {
    const SUBS: usize = 1000;
    let bus = InMemoryBus::new(Config::default()).unwrap();
    // One first, so what a bus allocates once is not counted.
    let first = bus.subscribe("idle.0").await.unwrap();
    COUNTING.store(true, Relaxed);
    let before = LIVE.load(Relaxed);
    let mut subs = Vec::with_capacity(SUBS);
    let held_by_vec = SUBS * std::mem::size_of::<busbar::Subscription>();
    for i in 0..SUBS {
        subs.push(bus.subscribe(&format!("idle.{}", i + 1)).await.unwrap());
    }
    let grown = LIVE.load(Relaxed) - before - held_by_vec as isize;
    COUNTING.store(false, Relaxed);
    drop((first, subs));
    grown as f64 / SUBS as f64
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
    println!("\nload average at the end: {}", load_average());
}
