//! The cost of metrics on the publish path: ns per `publish` on the in-memory bus (one
//! subscriber, 128-byte payloads, the subscriber draining), without and with a scraper
//! reading `bus.metrics()` every millisecond (1000 scrapes a second, far more than
//! Prometheus does) on another thread. Rounds interleave; medians and their ratio are printed.
//!
//!     cargo bench -p busbar-benches --bench metrics_cost

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use busbar::{Bytes, Config, EventBus};

const PER_ROUND: u64 = 200_000;
const ROUNDS: usize = 15;

/// ns per publish of one round on a fresh bus, scraped meanwhile when `scrape`.
async fn round(scrape: bool) -> f64 {
    let bus: Arc<dyn EventBus> = busbar::connect(Config::default()).await.unwrap();
    let mut sub = bus.subscribe("bench.>").await.unwrap();
    let drain = tokio::spawn(async move {
        let mut n = 0;
        while n < PER_ROUND {
            sub.next().await.unwrap().unwrap();
            n += 1;
        }
    });
    let stop = Arc::new(AtomicBool::new(false));
    let scraper = scrape.then(|| {
        let (bus, stop) = (bus.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut scrapes = 0u64;
            while !stop.load(Relaxed) {
                std::hint::black_box(bus.metrics());
                scrapes += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            scrapes
        })
    });
    let payload = Bytes::from(vec![7u8; 128]);
    let started = Instant::now();
    for _ in 0..PER_ROUND {
        bus.publish("bench.metrics", payload.clone()).await.unwrap();
    }
    let elapsed = started.elapsed();
    drain.await.unwrap();
    stop.store(true, Relaxed);
    if let Some(scraper) = scraper {
        assert!(scraper.join().unwrap() > 0);
    }
    elapsed.as_nanos() as f64 / PER_ROUND as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (mut without, mut with) = (Vec::new(), Vec::new());
    rt.block_on(async {
        round(false).await; // warm-up
        for _ in 0..ROUNDS {
            without.push(round(false).await);
            with.push(round(true).await);
        }
    });
    let (a, b) = (median(without), median(with));
    println!("publish, in-memory, 1 subscriber, 128 B, {ROUNDS} interleaved rounds of {PER_ROUND}:");
    println!("  without a scraper:          {a:.1} ns/publish (median)");
    println!("  scraped every 1 ms:         {b:.1} ns/publish (median)");
    println!("  ratio with/without:         {:.3}", b / a);
}
