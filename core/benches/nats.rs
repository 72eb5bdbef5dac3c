//! busbar's NATS backend side by side with raw async-nats doing the same work against
//! the same private nats-server, in one run. Prints a table; each figure is the median
//! of ROUNDS rounds, the two sides interleaved round by round, with the load average.
//!
//!     cargo bench -p busbar-benches --bench nats
//!
//! Needs a nats-server binary (Debian's package; see tests/support/nats_server.rs).
//! `--bench nats_mimalloc` runs the same with mimalloc as the allocator of the whole
//! process (async-nats' header maps make many small allocations that glibc's malloc
//! serialises on an arena lock when another thread frees them).

use std::sync::Arc;
use std::time::{Duration, Instant};

use busbar::{Backend, Bytes, Config, EventBus};
use futures_util::StreamExt;

#[path = "../tests/support/nats_server.rs"]
mod nats_server;
#[path = "side_by_side.rs"]
mod side_by_side;
use side_by_side::{load_average, side_by_side};

const ROUNDS: usize = 5;
const PUBLISHES: usize = 200_000;
const PUB_SUB: usize = 100_000;
const REQUESTS: usize = 5_000;
const JS_PUBLISHES: usize = 50_000;
/// Acked publishes in flight at once (acks are awaited in batches, not one by one).
const JS_WINDOW: usize = 256;
const IDLE: Duration = Duration::from_secs(2);

/// Publishes per round for `payload`: PUBLISHES, fewer for large payloads (about 512 MiB).
fn publishes(payload: &Bytes) -> usize {
    PUBLISHES.min((512 << 20) / payload.len().max(1))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn busbar(url: &str) -> Arc<dyn EventBus> {
    let config = Config::default().with_backend(Backend::Nats).with_nats_url(url);
    busbar::connect(config).await.unwrap()
}

async fn publish_rate_busbar(url: &str, payload: Bytes) -> f64 {
    let bus = busbar(url).await;
    let start = Instant::now();
    let n = publishes(&payload);
    for _ in 0..n {
        bus.publish("bench.pub", payload.clone()).await.unwrap();
    }
    bus.flush().await.unwrap();
    let rate = n as f64 / start.elapsed().as_secs_f64();
    bus.close().await.unwrap();
    rate
}

async fn publish_rate_raw(url: &str, payload: Bytes) -> f64 {
    let client = async_nats::connect(url).await.unwrap();
    let start = Instant::now();
    let n = publishes(&payload);
    for _ in 0..n {
        client.publish("bench.pub", payload.clone()).await.unwrap();
    }
    client.flush().await.unwrap();
    let rate = n as f64 / start.elapsed().as_secs_f64();
    client.drain().await.unwrap();
    rate
}

/// Raw async-nats sending the very headers busbar sends (the same bytes on the wire).
async fn publish_rate_raw_with_headers(url: &str, payload: Bytes) -> f64 {
    let client = async_nats::connect(url).await.unwrap();
    let template = busbar::Message::builder("bench.pub")
        .data(payload.clone())
        .build()
        .unwrap();
    let start = Instant::now();
    let n = publishes(&payload);
    for _ in 0..n {
        let mut headers = async_nats::HeaderMap::new();
        busbar::envelope::codec::encode_headers_with(&template, |k, v| headers.insert(k, v));
        client
            .publish_with_headers("bench.pub", headers, payload.clone())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    let rate = n as f64 / start.elapsed().as_secs_f64();
    client.drain().await.unwrap();
    rate
}

/// Raw async-nats sending busbar's header block for a message, encoded once: what a
/// publish costs async-nats with these bytes on the wire, without building them.
async fn publish_rate_raw_encoded(url: &str, payload: Bytes) -> f64 {
    let client = async_nats::connect(url).await.unwrap();
    let template = busbar::Message::builder("bench.pub")
        .data(payload.clone())
        .build()
        .unwrap();
    let block = busbar::envelope::codec::header_block(&template, busbar::envelope::codec::Dedupe::Without);
    let block = async_nats::header::EncodedHeaders::new(block).unwrap();
    let start = Instant::now();
    let n = publishes(&payload);
    for _ in 0..n {
        client
            .publish_with_encoded_headers("bench.pub", block.clone(), payload.clone())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    let rate = n as f64 / start.elapsed().as_secs_f64();
    client.drain().await.unwrap();
    rate
}

async fn pub_sub_rate_busbar(url: &str, payload: Bytes) -> f64 {
    let (publisher, subscriber) = (busbar(url).await, busbar(url).await);
    let sub = subscriber.subscribe("bench.ps").await.unwrap();
    subscriber.flush().await.unwrap();
    let start = Instant::now();
    let consumer = tokio::spawn(async move { consume(sub, |m| m.is_ok()).await });
    for _ in 0..PUB_SUB {
        publisher.publish("bench.ps", payload.clone()).await.unwrap();
    }
    publisher.flush().await.unwrap();
    received_rate(start, consumer.await.unwrap())
}

/// Receives until PUB_SUB messages arrived or none came for IDLE (a slow consumer
/// loses messages on NATS); returns how many arrived and when the last one did.
async fn consume<S: futures_util::Stream + Unpin>(
    mut stream: S,
    ok: impl Fn(&S::Item) -> bool,
) -> (usize, Instant) {
    let (mut got, mut last) = (0, Instant::now());
    while got < PUB_SUB {
        match tokio::time::timeout(IDLE, stream.next()).await {
            Ok(Some(item)) if ok(&item) => {
                got += 1;
                last = Instant::now();
            }
            _ => break,
        }
    }
    (got, last)
}

fn received_rate(start: Instant, (got, last): (usize, Instant)) -> f64 {
    if got < PUB_SUB {
        eprintln!("  note: the subscriber received {got} of {PUB_SUB} (slow consumer drops)");
    }
    got as f64 / last.duration_since(start).as_secs_f64()
}

async fn pub_sub_rate_raw(url: &str, payload: Bytes) -> f64 {
    let (publisher, subscriber) = (
        async_nats::connect(url).await.unwrap(),
        async_nats::connect(url).await.unwrap(),
    );
    let sub = subscriber.subscribe("bench.ps").await.unwrap();
    subscriber.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await; // raw flush is not a round trip
    let start = Instant::now();
    let consumer = tokio::spawn(async move { consume(sub, |_| true).await });
    for _ in 0..PUB_SUB {
        publisher.publish("bench.ps", payload.clone()).await.unwrap();
    }
    publisher.flush().await.unwrap();
    received_rate(start, consumer.await.unwrap())
}

async fn request_latency_busbar(url: &str, payload: Bytes) -> Vec<Duration> {
    let (client, server) = (busbar(url).await, busbar(url).await);
    let responder = server.subscribe("bench.rr").await.unwrap();
    tokio::spawn(busbar::serve(responder, |req| async move { req.data().clone() }));
    server.flush().await.unwrap();
    let mut times = Vec::with_capacity(REQUESTS);
    for _ in 0..REQUESTS {
        let start = Instant::now();
        client
            .request("bench.rr", payload.clone(), Duration::from_secs(5))
            .await
            .unwrap();
        times.push(start.elapsed());
    }
    times
}

async fn request_latency_raw(url: &str, payload: Bytes) -> Vec<Duration> {
    let (client, server) = (
        async_nats::connect(url).await.unwrap(),
        async_nats::connect(url).await.unwrap(),
    );
    let mut responder = server.subscribe("bench.rr").await.unwrap();
    let answering = server.clone();
    tokio::spawn(async move {
        while let Some(req) = responder.next().await {
            if let Some(reply) = req.reply {
                answering.publish(reply, req.payload).await.unwrap();
            }
        }
    });
    server.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut times = Vec::with_capacity(REQUESTS);
    for _ in 0..REQUESTS {
        let start = Instant::now();
        client.request("bench.rr", payload.clone()).await.unwrap();
        times.push(start.elapsed());
    }
    times
}

/// JetStream publishes acknowledged by the stream, JS_WINDOW in flight at once.
async fn declare_bench_stream(url: &str) {
    let bus = busbar(url).await;
    bus.declare_stream(busbar::StreamConfig::new("BENCH", ["bench.js"]))
        .await
        .unwrap();
    bus.close().await.unwrap();
}

async fn js_publish_rate_busbar(url: &str, payload: Bytes) -> f64 {
    use futures_util::stream;
    let bus = busbar(url).await;
    let start = Instant::now();
    let bus_ref = &bus;
    let acked = stream::iter(0..JS_PUBLISHES)
        .map(|_| {
            let msg = bus_ref.message("bench.js").data(payload.clone()).build().unwrap();
            async move { bus_ref.publish_durable(msg).await.unwrap() }
        })
        .buffer_unordered(JS_WINDOW)
        .count()
        .await;
    assert_eq!(acked, JS_PUBLISHES);
    let rate = JS_PUBLISHES as f64 / start.elapsed().as_secs_f64();
    bus.close().await.unwrap();
    rate
}

/// Raw JetStream publishes; with `headers`, carrying the header block busbar sends
/// (a fresh id each, as busbar's messages have).
async fn js_publish_rate_raw(url: &str, payload: Bytes, headers: bool) -> f64 {
    use futures_util::stream;
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let js_ref = &js;
    let start = Instant::now();
    let acked = stream::iter(0..JS_PUBLISHES)
        .map(|_| {
            let payload = payload.clone();
            let block = headers.then(|| {
                let msg = busbar::Message::builder("bench.js")
                    .data(payload.clone())
                    .build()
                    .unwrap();
                busbar::nats::nats_headers(&msg).unwrap()
            });
            async move {
                match block {
                    Some(h) => js_ref.publish_with_headers("bench.js", h, payload).await,
                    None => js_ref.publish("bench.js", payload).await,
                }
                .unwrap()
                .await
                .unwrap()
            }
        })
        .buffer_unordered(JS_WINDOW)
        .count()
        .await;
    assert_eq!(acked, JS_PUBLISHES);
    let rate = JS_PUBLISHES as f64 / start.elapsed().as_secs_f64();
    client.drain().await.unwrap();
    rate
}

fn row(name: &str, (raw, ours, ratio): (f64, f64, f64), unit: &str) {
    println!("{name:<44} {raw:>14.0} {ours:>14.0} {unit:<8} {ratio:>6.2}x");
}

pub(crate) fn main() {
    let Some(rt) = side_by_side::runtime() else {
        return;
    };
    let server = nats_server::NatsServer::start();
    let url = server.url();
    if std::env::var_os("BUSBAR_BENCH_FUTURE_SIZES").is_some() {
        // What `EventBus::publish` allocates per call (its boxed future), on NATS and in
        // memory: kept small, it stays in the allocator's per-thread cache.
        rt.block_on(async {
            let bus = busbar(&url).await;
            let f = bus.publish("bench.pub", Bytes::from_static(b"x"));
            eprintln!("NATS publish future: {} bytes", std::mem::size_of_val(&*f));
            f.await.unwrap();
            let mem = busbar::connect(Config::default()).await.unwrap();
            let f = mem.publish("bench.pub", Bytes::from_static(b"x"));
            eprintln!("memory publish future: {} bytes", std::mem::size_of_val(&*f));
            f.await.unwrap();
        });
        return;
    }
    if std::env::var_os("BUSBAR_BENCH_PROFILE_PUBLISH").is_some() {
        // For a profiler: only busbar's 128 B publishes, a few rounds.
        for _ in 0..3 {
            let rate = rt.block_on(publish_rate_busbar(&url, Bytes::from(vec![b'x'; 128])));
            eprintln!("busbar publish 128 B: {rate:.0} msgs/s");
        }
        return;
    }
    println!(
        "nats-server on {url}; {ROUNDS} interleaved rounds, medians; ratio = median of the \
         per-round busbar / raw (higher is better for rates); load average {}\n",
        load_average()
    );
    println!(
        "{:<44} {:>14} {:>14} {:<8} {:>7}",
        "", "raw async-nats", "busbar", "", "ratio"
    );
    for size in [128usize, 1024, 64 * 1024] {
        let payload = Bytes::from(vec![b'x'; size]);
        let p = &payload;
        row(
            &format!("publish {size} B"),
            side_by_side(
                ROUNDS,
                || rt.block_on(publish_rate_raw(&url, p.clone())),
                || rt.block_on(publish_rate_busbar(&url, p.clone())),
            ),
            "msgs/s",
        );
        if size == 128 {
            row(
                "  raw with a HeaderMap of busbar's headers",
                side_by_side(
                    ROUNDS,
                    || rt.block_on(publish_rate_raw_with_headers(&url, p.clone())),
                    || rt.block_on(publish_rate_busbar(&url, p.clone())),
                ),
                "msgs/s",
            );
            row(
                "  raw with busbar's header block, encoded",
                side_by_side(
                    ROUNDS,
                    || rt.block_on(publish_rate_raw_encoded(&url, p.clone())),
                    || rt.block_on(publish_rate_busbar(&url, p.clone())),
                ),
                "msgs/s",
            );
        }
    }
    let payload = Bytes::from(vec![b'x'; 128]);
    let p = &payload;
    row(
        "publish->subscribe 128 B",
        side_by_side(
            ROUNDS,
            || rt.block_on(pub_sub_rate_raw(&url, p.clone())),
            || rt.block_on(pub_sub_rate_busbar(&url, p.clone())),
        ),
        "msgs/s",
    );
    // busbar declares the stream both use.
    rt.block_on(declare_bench_stream(&url));
    row(
        &format!("JetStream acked publish 128 B ({JS_WINDOW} in flight)"),
        side_by_side(
            ROUNDS,
            || rt.block_on(js_publish_rate_raw(&url, p.clone(), false)),
            || rt.block_on(js_publish_rate_busbar(&url, p.clone())),
        ),
        "msgs/s",
    );
    row(
        "  raw with busbar's headers",
        side_by_side(
            ROUNDS,
            || rt.block_on(js_publish_rate_raw(&url, p.clone(), true)),
            || rt.block_on(js_publish_rate_busbar(&url, p.clone())),
        ),
        "msgs/s",
    );
    for (name, p) in [("request/reply p50", 0.5), ("request/reply p99", 0.99)] {
        let micros = |mut times: Vec<Duration>| {
            times.sort();
            percentile(&times, p).as_secs_f64() * 1e6
        };
        let (r, o, ratio) = side_by_side(
            ROUNDS,
            || micros(rt.block_on(request_latency_raw(&url, payload.clone()))),
            || micros(rt.block_on(request_latency_busbar(&url, payload.clone()))),
        );
        println!(
            "{name:<44} {r:>14.1} {o:>14.1} {:<8} {ratio:>6.2}x (lower is better)",
            "us"
        );
    }
    println!("\nload average at the end: {}", load_average());
}
